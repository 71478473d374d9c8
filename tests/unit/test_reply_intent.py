"""classify_reply: what a customer's reply to a "resolved" mail means, in Turkish, English and German (and the
thank-yous of a few more languages), with sign-offs and signatures, mixed signals and real replies from two public
corpora.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ticketd.parsers.quotes import strip_reply
from ticketd.parsers.reply_intent import MAX_THANKS_WORDS, classify_reply

CORPUS = Path(__file__).parents[1] / "data" / "corpus"


def _ids(cases: list[str]) -> list[str]:
    return [case.replace("\n", "⏎")[:40] for case in cases]


# --------------------------------------------------------------------------------------------------------------
# thanks

THANKS_EN = [
    "thanks, that fixed it",
    "Thank you!",
    "works now, thanks",
    "ok thanks",
    "perfect, thank you",
    "Thanks a lot, it works perfectly now.",
    "Thank you so much for your quick help!",
    "Great, thanks!",
    "Awesome, that did it. Thanks!",
    "thx",
    "Many thanks!",
    "Thanks, all good now.",
    "It works again, thank you very much.",
    "Problem solved, thanks!",
    "The error is gone. Thanks for your help!",
    "No more errors since the update, thanks.",
    "I haven't had any problems since, thank you.",
    "Thanks for the fast response, everything is working fine now.",
    "Got it, thanks!",
    "Sounds good, thank you.",
    "Much appreciated!",
    "Cheers!",
    "ok",
    "Thank you, have a nice weekend!",
    "Thanks again for your patience and support.",
    "Thanks! If it breaks again I'll let you know.",
    "Thank you. I will get back to you if the problem comes back.",
    "Thank you. Could not be happier!",
    "I can't thank you enough!",
    "Thanks, I don't need anything else.",
    "You can close the ticket, thanks.",
    "Great support as always, many thanks!",
    "Thanks for fixing it so quickly.",
    "Thank you, I am very happy with the result.",
    "Thanks. That's all.",
    "Thanks for fixing the issue so quickly!",
    "The error message is gone, thanks.",
]
THANKS_TR = [
    "Çok teşekkürler, artık çalışıyor!",
    "teşekkürler, çalıştı",
    "çok teşekkürler artık çalışıyor",
    "sağolun",
    "Sağ olun",
    "eyvallah",
    "Teşekkür ederim.",
    "Çok teşekkür ederiz, sorun çözüldü.",
    "Tamam, teşekkürler.",
    "Düzeldi, elinize sağlık.",
    "Harika, çok teşekkürler! İyi çalışmalar.",
    "Yardımlarınız için teşekkür ederim, şu an sorunsuz çalışıyor.",
    "Teşekkürler, sorun kalmadı.",
    "Artık hata vermiyor, teşekkür ederim",
    "Hiçbir sorun yaşamadım, teşekkürler",
    "Merhaba, sorun çözülmüş. Teşekkürler, kolay gelsin.",
    "Tesekkurler, calisiyor",
    "cok tesekkur ederim, duzeldi",
    "Teşekkürler, çalışmazsa size tekrar yazarım.",
    "Ilginiz için teşekkürler",
    "Allah razı olsun, çok teşekkürler",
    "Teşekkürler, şimdilik sorun yok.",
    "Bileti kapatabilirsiniz, teşekkürler.",
    "Teşekkürler, çok memnun kaldım.",
    "Tekrar teşekkürler!",
    "Sorunu çözdünüz, çok teşekkürler!",
]
THANKS_DE = [
    "danke, funktioniert",
    "Vielen Dank!",
    "Danke schön, jetzt geht es wieder.",
    "Super, vielen Dank für die schnelle Hilfe!",
    "Perfekt, hat geklappt. Danke!",
    "Herzlichen Dank, das Problem ist behoben.",
    "Danke, der Fehler tritt nicht mehr auf.",
    "Kein Problem mehr, danke!",
    "Alles klar, danke.",
    "Danke, ich melde mich, falls es nicht klappt.",
    "Sie können das Ticket schließen, danke.",
    "Wie immer super, danke!",
    "Danke, das Problem wurde gelöst.",
]
THANKS_OTHER_LANGUAGES = [
    "merci",
    "Merci beaucoup, ça marche !",
    "gracias",
    "¡Muchas gracias, ya funciona!",
    "Bedankt, het werkt weer.",
    "Hartelijk dank!",
    "Dank je wel",
    "Tack så mycket!",
    "Mange tak for hjælpen.",
    "Grazie mille",
]


@pytest.mark.parametrize("text", THANKS_EN + THANKS_TR + THANKS_DE + THANKS_OTHER_LANGUAGES,
                         ids=_ids(THANKS_EN + THANKS_TR + THANKS_DE + THANKS_OTHER_LANGUAGES))
def test_thanks(text: str) -> None:
    assert classify_reply(text) == "thanks"


# --------------------------------------------------------------------------------------------------------------
# complaint

COMPLAINT_EN = [
    "still not working",
    "It doesn't work.",
    "it doesnt work",
    "The problem is back.",
    "Not satisfied.",
    "This did not fix anything.",
    "I still get the same error.",
    "Same problem as before.",
    "It crashed again this morning.",
    "The issue persists after the update.",
    "Nothing has changed.",
    "I can't log in.",
    "Unable to open the report.",
    "Why was this ticket closed? Nothing is fixed.",
    "I'm very disappointed with your support.",
    "Please reopen the ticket.",
    "It's broken again.",
    "Still waiting for a real solution.",
    "The export still fails.",
    "👎",
    "Thanks, that didn't help.",
    "Thanks for the update. The issue is still there.",
    "It works but it's still slow.",
    "If I restart it, it still fails.",
    "It doesn't work if I use Firefox.",
    "Thanks, I'm not happy with the result.",
    "Warning: the export still fails",
]
COMPLAINT_TR = [
    "hâlâ çalışmıyor",
    "Hala çalışmıyor",
    "hala calismiyor",
    "yine bozuldu",
    "Sorun devam ediyor.",
    "olmadı",
    "Olmadı maalesef.",
    "memnun değilim",
    "Hiç memnun kalmadım.",
    "Düzelmedi.",
    "Sorun çözülmedi, tekrar aynı hata çıkıyor.",
    "Sisteme giremiyorum.",
    "Dosyayı yükleyemedim.",
    "Mail gelmiyor hâlâ.",
    "Ekran yine donuyor.",
    "ÇALIŞMIYOR",
    "Bir işe yaramadı.",
    "Hiçbir şey değişmedi.",
    "Aynı sorun tekrar başladı.",
    "Teşekkürler ama hala düzelmedi.",
    "Teşekkürler, ancak rapor hâlâ boş geliyor.",
]
COMPLAINT_DE = [
    "funktioniert immer noch nicht",
    "geht nicht",
    "nicht zufrieden",
    "Das Problem besteht weiterhin.",
    "Es klappt leider nicht.",
    "Der Drucker ist schon wieder kaputt.",
    "Ich bin sehr enttäuscht.",
    "Es funktioniert nicht mehr.",
    "Keine Besserung.",
    "Danke, aber es geht immer noch nicht.",
    "Danke, das Problem ist leider noch da.",
]
COMPLAINT_OTHER_LANGUAGES = [
    "Ça ne marche toujours pas.",
    "Sigue sin funcionar.",
    "Het werkt nog steeds niet.",
]


@pytest.mark.parametrize("text", COMPLAINT_EN + COMPLAINT_TR + COMPLAINT_DE + COMPLAINT_OTHER_LANGUAGES,
                         ids=_ids(COMPLAINT_EN + COMPLAINT_TR + COMPLAINT_DE + COMPLAINT_OTHER_LANGUAGES))
def test_complaint(text: str) -> None:
    assert classify_reply(text) == "complaint"


# --------------------------------------------------------------------------------------------------------------
# question

QUESTION_EN = [
    "Can you also add my colleague?",
    "can you also add my colleague to the account",
    "How do I export the report",
    "Is it possible to get the invoice as PDF",
    "What about the other printer",
    "Thanks! One more thing: can I also change my password?",
    "Thanks, one more question: does this work on Android too",
    "I was wondering whether this also applies to the mobile app.",
    "Any update on the refund",
    "When will the new version be available",
    "Do you need anything else from me",
    "Why does it take so long",
    "Great, thanks. Could you send me the invoice as well",
    "OK, thanks. Invoice?",
    "Thank you, I would like to know if this also works on Android.",
]
QUESTION_TR = [
    "Çalışıyor mu?",
    "calisiyor mu simdi",
    "Bu ayarı nasıl değiştirebilirim",
    "Faturayı PDF olarak gönderebilir misiniz",
    "Teşekkürler, peki şifremi nasıl değiştirebilirim",
    "Acaba mobil uygulamada da aynı ayar var mı",
    "Bir sorum var: raporu Excel olarak alabilir miyim",
    "Hangi sürümü kurmam gerekiyor",
    "Rapor ne zaman hazır olur",
    "Teşekkürler! Bir de faturayı e-posta ile alabilir miyiz",
    "TEŞEKKÜRLER, YARIN DA ÇALIŞACAK MI",
]
QUESTION_DE = [
    "Kann ich das auch exportieren",
    "Wie lange dauert das",
    "Können Sie mir die Rechnung schicken",
    "Danke! Noch eine Frage: gibt es das auch für Android",
    "Warum dauert das so lange",
    "Ist es möglich, den Bericht als PDF zu bekommen",
]
QUESTION_OTHER_LANGUAGES = [
    "Merci ! Est-ce que je peux aussi changer mon mot de passe ?",
    "¿Puedo cambiar la contraseña?",
    "Bedankt! Kan ik ook een factuur krijgen?",
]


@pytest.mark.parametrize("text", QUESTION_EN + QUESTION_TR + QUESTION_DE + QUESTION_OTHER_LANGUAGES,
                         ids=_ids(QUESTION_EN + QUESTION_TR + QUESTION_DE + QUESTION_OTHER_LANGUAGES))
def test_question(text: str) -> None:
    assert classify_reply(text) == "question"


# --------------------------------------------------------------------------------------------------------------
# other: new requests, news, long or unreadable text

OTHER = [
    "",
    "   \n\n  ",
    "Thanks. Please also add my colleague to the account.",
    "Oh thanks.\n\nHaving the function would be great.",
    "Thanks in advance!",
    "Şimdiden teşekkürler.",
    "Danke im Voraus.",
    "Please send me the invoice.",
    "Lütfen faturayı da gönderin.",
    "Bitte schicken Sie mir die Rechnung.",
    "I have a new problem with the invoice export.",
    "Yarın ofiste olmayacağım.",
    "Hi,",
    "Regards,\nJohn",
    "Saygılarımla,\nAhmet Yılmaz",
    "Mit freundlichen Grüßen\nHans Müller",
    "John Smith\nACME Corp\n+90 212 555 12 12",
    "--\nJohn Smith\nACME Corp",
    "Sent from my iPhone",
    "😊",
    "asd",
    "Here is another email",
    "Thanks, invoice attached.",
    "Thanks for nothing.",
    "Thank you, but I would like to speak to a manager.",
    "Thanks. Our office moves to Ankara next month, please update the address.",
    "Ok, I will try it tomorrow.",
    "Gracias, mi problema no está resuelto del todo pero lo miro mañana.",
    "Tamam, yarın deneyeceğim.",
    "ありがとうございます",
    "Thanks, everything works except printing",
    "Danke, funktioniert nur teilweise",
    "Teşekkürler, kısmen çalışıyor",
    "Thanks John Please call me",
    "Please don't close the ticket, thanks",
    "Teşekkürler, lütfen bileti kapatmayın.",
    "Thanks, I'll try that and get back to you.",
    "Thanks!\nPlease call me back on +90 212 555 12 12",
    "Thanks!\nCall me: +90 212 555 12 12",
    "This message contains the logs you asked for.\n\nThanks",
    "Thanks, we have a problem",
    "Thanks, there is a bug",
    "Thanks. Help me",
    "Teşekkürler, hata var",
    "Teşekkürler, tekrar oldu",  # "it happened again" or "it worked again": an agent should look
]


# Negations and conditions that report nothing broken.
NOT_COMPLAINT = [
    "Thanks, I didn't expect it to work so quickly.",
    "If that fails, the tunnel is not working.",
    "Teşekkürler, çalışmazsa size tekrar yazarım.",
    "Don't hesitate to close it, thanks",
    "I don't know why, but it works now",
    "Teşekkürler, hiç sorun olmadı",
    "Sorun değil",
    "Danke, der Fehler tritt nicht mehr auf.",
    "Keine Probleme mehr.",
    "I haven't seen the error since Monday.",
    "Yapmam gereken bir şey var mı?",
]


@pytest.mark.parametrize("text", NOT_COMPLAINT, ids=_ids(NOT_COMPLAINT))
def test_not_a_complaint(text: str) -> None:
    assert classify_reply(text) != "complaint"


@pytest.mark.parametrize("text", OTHER, ids=_ids(OTHER))
def test_other(text: str) -> None:
    assert classify_reply(text) == "other"


# --------------------------------------------------------------------------------------------------------------
# Sign-offs and signatures are not content

SIGNED_THANKS = [
    "Thanks,\nJohn Smith\nACME Corp\n+90 212 555 12 12",
    "Thanks!\n\nJohn",
    "Works now, thanks.\n\n-- \nJohn Smith\nHead of IT, ACME Corp\nhttps://acme.example",
    "Works now, thanks.\n\n--\nJohn Smith",
    "Hi John,\n\nThanks, it works now!\n\nBest regards,\nJohn Smith\nACME Corp\njohn@acme.example",
    "Merhaba Ayşe Hanım,\n\nÇok teşekkürler, sorun çözüldü.\n\nSaygılarımla\nAhmet Yılmaz\nBilgi İşlem Müdürü\n"
    "Tel: +90 212 555 12 12",
    "Teşekkürler, çalıştı.\n\nAhmet\n\niPhone'umdan gönderildi",
    "Hallo Herr Müller,\n\nvielen Dank, es funktioniert wieder.\n\nMit freundlichen Grüßen\nHans Schmidt\n"
    "Beispiel GmbH\nTelefon: 030 1234567",
    "Danke!\n\nVon meinem iPhone gesendet",
    "Thank you, Sonya Johnson.",
    "Perfect!\n\nKind regards,\nJane Doe\nCustomer Success Manager\nExample Ltd.",
    "Thanks, that fixed it!\n\nSent from my iPhone",
    "Thanks!\n\nJohn Smith | ACME Corp | +44 20 7946 0000",
    "Thanks, works now.\n\nBest,\nJohn\n\nCAUTION: This email originated from outside of the organization.",
    "Teşekkürler, düzeldi.\n\nBu e-posta ve ekleri gizlidir, yalnızca alıcısına yöneliktir.",
    "Danke, klappt!\n-Hans",
    "Thanks J. Smith",
    "Thanks!\n\nJohn Smith\nTel: +90 212 555 12 12\nE-mail: john@acme.example\nwww.acme.example",
    "Çok teşekkürler,\nÇiğdem Yılmaz\nMüşteri A.Ş.",
]


@pytest.mark.parametrize("text", SIGNED_THANKS, ids=_ids(SIGNED_THANKS))
def test_signature_and_sign_off_are_not_content(text: str) -> None:
    assert classify_reply(text) == "thanks"


def test_closing_thanks_of_a_long_message_about_a_new_problem_is_not_a_thank_you() -> None:
    text = (
        "Hi,\n\nsince this morning the invoice export shows the wrong VAT rate for our customers in Germany and the "
        "totals on the summary page are off by a few cents.\n\nThanks,\nJohn Smith\nACME Corp\n+90 212 555 12 12"
    )
    assert classify_reply(text) == "other"


def test_a_complaint_after_a_sign_off_still_counts() -> None:
    assert classify_reply("Thanks!\nBut it still doesn't work.") == "complaint"
    assert classify_reply("Regards,\nJohn\nP.S. It Still Does Not Work") == "complaint"


def test_a_question_in_the_signature_block_does_not_count() -> None:
    text = "Thanks, works now.\n\n-- \nJohn Smith\nNeed IT help? Call ACME: +90 212 555 12 12"
    assert classify_reply(text) == "thanks"


# A signature block without a sign-off line or contact details: one to four lines (a name, a firm with its legal
# form, a job title, an address) in a paragraph of its own below a short message.
SIGNATURE_BLOCKS = {
    "tr-cok-as": "Çok teşekkür ederim\n\nÇiğdem Yılmaz\nMüşteri A.Ş.",
    "tr-cok-emoji-as": "Çok teşekkür ederim 🙏\n\nÇiğdem Yılmaz\nMüşteri A.Ş.",
    "tr-cok-ltd-sti": "Çok teşekkür ederim\n\nÇiğdem Yılmaz\nÖztürk İnşaat Ltd. Şti.",
    "tr-solved-as": "Teşekkürler, sorun çözüldü.\n\nÇiğdem Yılmaz\nMüşteri A.Ş.",
    "tr-title-address": "Teşekkürler, çalıştı.\n\nÇiğdem Yılmaz\nBilgi İşlem Müdürü\nAtatürk Cad. No: 12\n"
                        "34710 Kadıköy/İstanbul",
    "en-many-corp": "Many thanks, it works now!\n\nJohn Smith\nAcme Corp.",
    "en-very-bv": "Very quick, thanks, it works now.\n\nJane Doe\nExample B.V.",
    "en-name-in-capitals": "Thanks, works now.\n\nJOHN SMITH\nHead of IT",
    "de-vielen-gmbh": "Vielen Dank, jetzt klappt es.\n\nMax Müller\nMüller GmbH",
    "de-herzlichen-gmbh-co-kg": "Herzlichen Dank, es funktioniert wieder.\n\nMax Müller\nBeispiel GmbH & Co. KG",
}


@pytest.mark.parametrize("text", SIGNATURE_BLOCKS.values(), ids=SIGNATURE_BLOCKS.keys())
def test_a_signature_block_below_a_short_message_is_not_content(text: str) -> None:
    assert classify_reply(text) == "thanks"


# What follows a thank-you in a paragraph of its own and is not a signature block stays content.
NOT_A_SIGNATURE_BLOCK = {
    "tr-second-paragraph": "Teşekkürler.\n\nYarın yeni ofisimize de modem kurulumu istiyoruz.",
    "en-request-after-signature": "Many thanks, it works now!\n\nJohn Smith\nAcme Corp.\n\n"
                                  "Please also add Ayşe to the ticket.",
    "en-invoice-number": "Thanks!\nInvoice No. 4711",
    "de-second-paragraph": "Vielen Dank, jetzt klappt es.\n\nMax Müller braucht morgen auch einen Zugang.",
}


@pytest.mark.parametrize("text", NOT_A_SIGNATURE_BLOCK.values(), ids=NOT_A_SIGNATURE_BLOCK.keys())
def test_content_after_a_thank_you_is_not_taken_for_a_signature(text: str) -> None:
    assert classify_reply(text) == "other"


# --------------------------------------------------------------------------------------------------------------
# Mixed signals: complaint > question > thanks

MIXED = [
    ("Thanks, but it still doesn't work", "complaint"),
    ("Thanks! One more thing: can I also export to PDF?", "question"),
    ("Teşekkürler ama hâlâ çalışmıyor, ne yapmam gerekiyor?", "complaint"),
    ("Danke! Aber warum geht es immer noch nicht?", "complaint"),
    ("Why does it still not work?", "complaint"),
    ("It works now, thanks! Can you also reset my colleague's password?", "question"),
    ("Çok teşekkürler, çalıştı. Peki diğer bilgisayarda da yapmam gerekir mi?", "question"),
    ("Great, thanks! The printer works, but the scanner is still broken.", "complaint"),
    ("Vielen Dank, es funktioniert. Können Sie mir noch die Rechnung schicken?", "question"),
    ("Thanks for the fix. The problem is back since this morning.", "complaint"),
    ("Sorun yok, teşekkürler!", "thanks"),
    ("No problem at all, thank you!", "thanks"),
]


@pytest.mark.parametrize(("text", "expected"), MIXED, ids=_ids([t for t, _ in MIXED]))
def test_mixed_signals(text: str, expected: str) -> None:
    assert classify_reply(text) == expected


# --------------------------------------------------------------------------------------------------------------
# Turkish morphology, Unicode case and text typed without Turkish letters

@pytest.mark.parametrize(("text", "expected"), [
    ("çalışıyor", "thanks"),
    ("çalışmıyor", "complaint"),
    ("çalıştı", "thanks"),
    ("çalışmadı", "complaint"),
    ("düzeldi", "thanks"),
    ("düzelmedi", "complaint"),
    ("oldu, teşekkürler", "thanks"),
    ("olmadı", "complaint"),
    ("CALISMIYOR", "complaint"),
    ("calisti tesekkurler", "thanks"),
    ("TEŞEKKÜRLER", "thanks"),
    ("TESEKKURLER", "thanks"),
    ("İYİ ÇALIŞMALAR, TEŞEKKÜRLER", "thanks"),
    ("İyi çalışmalar, teşekkürler", "thanks"),
    ("HÂLÂ ÇALIŞMIYOR", "complaint"),
    ("HALA OLMADI", "complaint"),
    ("ÇALIŞIYOR MU", "question"),
    ("çalışıyor mı", "question"),
    ("SAĞOLUN", "thanks"),
    ("sagolun", "thanks"),
])
def test_turkish_forms_and_case(text: str, expected: str) -> None:
    assert classify_reply(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("THANK YOU, IT WORKS NOW!", "thanks"),
    ("IT STILL DOESN'T WORK", "complaint"),
    ("CAN YOU CALL ME", "question"),
    ("VIELEN DANK, FUNKTIONIERT!", "thanks"),
    ("GEHT IMMER NOCH NICHT", "complaint"),
])
def test_all_caps(text: str, expected: str) -> None:
    assert classify_reply(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("👍 thanks", "thanks"),
    ("👍", "thanks"),
    ("🙏", "thanks"),
    ("Thanks 😊", "thanks"),
    ("thanks :)", "thanks"),
    ("Teşekkürler 🙏🙏", "thanks"),
    (":+1:", "thanks"),
    ("👎 still broken", "complaint"),
    ("😊", "other"),
])
def test_emoji(text: str, expected: str) -> None:
    assert classify_reply(text) == expected


CASE_FREE = (THANKS_EN + THANKS_DE + THANKS_OTHER_LANGUAGES + COMPLAINT_EN + COMPLAINT_DE + QUESTION_EN + QUESTION_DE
             + OTHER)
CASE_FREE_TR = THANKS_TR + COMPLAINT_TR + QUESTION_TR


def _turkish_upper(text: str) -> str:
    return text.replace("i", "İ").replace("ı", "I").upper()


@pytest.mark.parametrize("text", CASE_FREE + CASE_FREE_TR, ids=_ids(CASE_FREE + CASE_FREE_TR))
def test_letter_case_does_not_matter(text: str) -> None:
    """Shouted or all lower-case, the same reply means the same; Turkish capitals follow Turkish rules (i→İ, ı→I)."""
    upper = _turkish_upper(text) if text in CASE_FREE_TR else text.upper()
    assert classify_reply(upper) == classify_reply(text.lower()) == classify_reply(text)


def test_names_are_known_by_their_capital_letter() -> None:
    # A signature in small letters or capitals cannot be told from a word; the reply falls to the safe side.
    assert classify_reply("Thanks!\n\nJohn") == "thanks"
    assert classify_reply("thanks!\n\njohn") == "other"
    assert classify_reply("Thanks John. Invoice attached.") == "other"


def test_huge_replies_are_read_in_part() -> None:
    assert classify_reply("It still fails:\n" + "x" * 100_000) == "complaint"
    assert classify_reply("Thanks! " * 50_000) == "other"
    assert classify_reply("a@" * 50_000) == "other"
    assert classify_reply("but " * 50_000) == "other"


def test_spanish_mi_is_no_turkish_question() -> None:
    assert classify_reply("Gracias, mi problema está resuelto") == "thanks"


def test_crlf_line_endings() -> None:
    assert classify_reply("Thanks,\r\nit works now.\r\n\r\nJohn\r\n") == "thanks"


def test_length_limit() -> None:
    polite = "Thank you so much for your help and support, everything works perfectly now."
    assert classify_reply(polite) == "thanks"
    long_text = " ".join([polite] * 4)
    assert len(long_text.split()) > MAX_THANKS_WORDS
    assert classify_reply(long_text) == "other"


# --------------------------------------------------------------------------------------------------------------
# Real replies from two public corpora, quotes stripped as the daemon strips them. Judged by hand from the stripped
# text: a file missing from here makes test_every_corpus_reply_is_judged fail, so new files get judged too.

CORPORA = ("zapier-email-reply-parser", "mail-parser-reply")

# Pure thank-yous / confirmations that it works.
CORPUS_THANKS = {
    "zapier-email-reply-parser/email_1_4.txt",  # "Awesome! I haven't had another problem with it."
    "zapier-email-reply-parser/email_1_7.txt",  # ":+1:"
    "mail-parser-reply/email_1_4.txt",
    "mail-parser-reply/email_1_7.txt",
    "mail-parser-reply/email_danish_1.txt",  # "Tak for din mail. Det lyder godt." + sign-off and name
}
# Replies that ask something.
CORPUS_QUESTIONS = {
    "zapier-email-reply-parser/email_1_1.txt",  # "What is the best way to clear a Riak bucket ...?"
    "zapier-email-reply-parser/email_one_is_not_on.txt",  # "Thank, this is really helpful. One outstanding question"
    "mail-parser-reply/email_1_1.txt",
    "mail-parser-reply/email_one_is_not_on.txt",
    "mail-parser-reply/email_nl_1_1.txt",  # Dutch version of email_1_1
    "mail-parser-reply/email_pl_1_1.txt",  # "Jak się masz?"
    "mail-parser-reply/email_pl_1_2.txt",
    "mail-parser-reply/email_pl_1_3.txt",
    "mail-parser-reply/email_swedish_1.txt",  # "Kan inte se att det står något om vilket företag det gäller?"
    "mail-parser-reply/forward.txt",  # "Can I get 1 Arrival Notice without PU# and invoice?"
    "mail-parser-reply/outlook.txt",  # "What is the best way ...?"
}
# Reports that something is still not working.
CORPUS_COMPLAINTS = {
    "mail-parser-reply/caution.txt",  # "... is still not available ... could you please check"
    "mail-parser-reply/caution2.txt",  # "it still won't work"
}
# Everything else: news, requests, instructions ("If that fails, the tunnel is not working" is a hypothesis, not
# a report), tests of the parsers, a greeting. None is a thank-you, even where a "thanks" or "Regards," stands.
CORPUS_OTHER = {
    f"{corpus}/{name}"
    for corpus in CORPORA
    for name in (
        "correct_sig.txt", "email_1_3.txt", "email_1_5.txt", "email_1_6.txt", "email_1_8.txt", "email_2_1.txt",
        "email_2_2.txt", "email_2_3.txt", "email_bullets.txt", "email_gmail.txt", "email_headers_no_delimiter.txt",
        "email_partial_quote_header.txt", "email_sig_delimiter_in_middle_of_line.txt", "greedy_on.txt",
        "pathological.txt",
    )
} | {
    "zapier-email-reply-parser/email_1_2.txt",  # "Hi,"
    "zapier-email-reply-parser/email_BlackBerry.txt",
    "zapier-email-reply-parser/email_iPhone.txt",
    "zapier-email-reply-parser/email_multi_word_sent_from_my_mobile_device.txt",
    "zapier-email-reply-parser/email_sent_from_my_not_signature.txt",
    "mail-parser-reply/begins_with_signature.txt",  # "Thank you, Sonya Johnson." then an invitation
    "mail-parser-reply/email_3_1.txt",
    "mail-parser-reply/email_danish_2.txt",  # "Jeg har modtaget filerne." (received, no thanks)
    "mail-parser-reply/email_danish_3.txt",
    "mail-parser-reply/email_danish_4.txt",
    "mail-parser-reply/email_danish_5.txt",
    "mail-parser-reply/email_ja_1_1.txt",
    "mail-parser-reply/email_ja_1_2.txt",
    "mail-parser-reply/email_nl_1_2.txt",
    "mail-parser-reply/email_sent_from_BlackBerry.txt",
    "mail-parser-reply/email_sent_from_iPhone.txt",
    "mail-parser-reply/email_sent_from_multi_word_mobile_device.txt",
    "mail-parser-reply/email_sent_from_not_signature.txt",
    "mail-parser-reply/email_sv_anon_1.txt",
    "mail-parser-reply/email_swedish_2.txt",  # "It's amazing ... but unfortunately I have a contract"
    "mail-parser-reply/multi_header.txt",  # "No problem. I'll just start a new order."
    "mail-parser-reply/multiline_on.txt",
}


def _corpus_files() -> list[str]:
    return sorted(
        f"{corpus}/{path.name}"
        for corpus in CORPORA
        for path in (CORPUS / corpus).glob("*.txt")
        if path.name not in {"PROVENANCE.txt", "LICENSE.txt"}
    )


def _corpus_reply(name: str) -> str:
    # Bytes, not read_text(): universal newlines would hide the CRLF bodies in the corpus.
    return strip_reply((CORPUS / name).read_bytes().decode("utf-8"))


CORPUS_JUDGED: dict[str, str] = {
    **dict.fromkeys(CORPUS_THANKS, "thanks"),
    **dict.fromkeys(CORPUS_QUESTIONS, "question"),
    **dict.fromkeys(CORPUS_COMPLAINTS, "complaint"),
    **dict.fromkeys(CORPUS_OTHER, "other"),
}


def test_every_corpus_reply_is_judged_once() -> None:
    groups = [CORPUS_THANKS, CORPUS_QUESTIONS, CORPUS_COMPLAINTS, CORPUS_OTHER]
    assert sum(len(group) for group in groups) == len(CORPUS_JUDGED), "a file is judged twice"
    assert set(_corpus_files()) == set(CORPUS_JUDGED)


@pytest.mark.parametrize("name", sorted(CORPUS_JUDGED))
def test_corpus_reply(name: str) -> None:
    assert classify_reply(_corpus_reply(name)) == CORPUS_JUDGED[name]


def test_no_long_corpus_reply_is_thanks() -> None:
    long_ones = [name for name in _corpus_files() if len(_corpus_reply(name).split()) > MAX_THANKS_WORDS]
    assert len(long_ones) >= 5
    assert [name for name in long_ones if classify_reply(_corpus_reply(name)) == "thanks"] == []
    assert not CORPUS_THANKS & set(long_ones)
