"""strip_reply on real reply bodies (two public corpora) and on our own fixtures for the Turkish/German clients.

Every case states the exact text that must survive, so a rule that cuts too much or too little fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ticketd.parsers.quotes import strip_reply

DATA = Path(__file__).parents[1] / "data"
CORPUS = DATA / "corpus"
REPLIES = DATA / "replies"

UNCHANGED = None  # the file holds no quote, header or signature: all of it is new text


def _read(path: Path) -> str:
    # Bytes, not read_text(): universal newlines would hide the CRLF bodies in the corpus.
    return path.read_bytes().decode("utf-8")


ZAPIER: dict[str, str | None] = {
    "correct_sig.txt": "this is an email with a correct -- signature.",
    "email_1_3.txt": "Oh thanks.\n\nHaving the function would be great.\n\n-Abhishek Kona",
    "email_1_4.txt": "Awesome! I haven't had another problem with it.",
    "email_1_5.txt": UNCHANGED,  # dash lists are not signatures
    "email_1_6.txt": "I get proper rendering as well.\n\nSent from a magnificent torch of pixels",
    "email_1_7.txt": ":+1:",  # CRLF body, attribution wrapped over two lines
    "email_1_8.txt": "I will reply under this one\n\nand under this.",  # interleaved below a leading header
    "email_2_1.txt": "Outlook with a reply",
    "email_2_2.txt": "Outlook with a reply directly above line",
    "email_2_3.txt": "Outlook with a reply above headers using unusual format",
    "email_BlackBerry.txt": "Here is another email",
    "email_bullets.txt": (
        "test 2 this should list second\n\nand have spaces\n\nand retain this formatting\n\n\n"
        "   - how about bullets\n   - and another"
    ),
    "email_gmail.txt": "This is a test for inbox replying to a github message.",
    "email_headers_no_delimiter.txt": "And another reply!",
    "email_iPhone.txt": "Here is another email",
    "email_multi_word_sent_from_my_mobile_device.txt": "Here is another email",
    "email_one_is_not_on.txt": (
        "Thank, this is really helpful.\n\nOne outstanding question I had:\n\nLocally (on development), when I run..."
    ),
    "email_partial_quote_header.txt": (
        "On your remote host you can run:\n\n     telnet 127.0.0.1 52698\n\n"
        "This should connect to TextMate (on your Mac, via the tunnel). If that \nfails, the tunnel is not working."
    ),
    "email_sent_from_my_not_signature.txt": UNCHANGED,
    "email_sig_delimiter_in_middle_of_line.txt": UNCHANGED,
    "greedy_on.txt": (
        "On your remote host you can run:\n\n     telnet 127.0.0.1 52698\n\n"
        "This should connect to TextMate (on your Mac, via the tunnel). If that\nfails, the tunnel is not working."
    ),
    "pathological.txt": (
        "I think you're onto something. I will try to fix the problem as soon as I\nget back to a computer."
    ),
}

MAIL_PARSER_REPLY: dict[str, str | None] = {
    "email_1_7.txt": ":+1:",
    "email_3_1.txt": "First reply.\n\nThis is fairly common; nothing too hard here!",  # Gmail German, wrapped
    "email_danish_1.txt": "Hej Peter,\n\nTak for din mail. Det lyder godt.\n\nMed venlig hilsen\nAnders Andersen",
    "email_danish_2.txt": "Hej Hanne,\n\nJeg har modtaget filerne.\n\nHilsen\nSøren",  # Fra:/Sendt:/Til:/Emne:
    "email_danish_3.txt": "Hej,\n\nSvar.",
    "email_danish_4.txt": "Hej,\n\nSvar.",  # -----Oprindelig meddelelse-----
    "email_danish_5.txt": UNCHANGED,
    "email_ja_1_2.txt": (
        "田中様\n\nお世話になっております。織田です。\n\nそれでは 11:00 にお待ちしております。\n\n\n"
        "以上、よろしくお願いいたします"
    ),
    "email_nl_1_2.txt": "Outlook met een antwoord",
    "email_pl_1_1.txt": "Czesc Anno,\r\n\r\nJak się masz?\r\n\r\nPozdrawiam,\r\nJan",  # own headers on top
    "email_pl_1_2.txt": "Czesc Anno,\r\n\r\nJak się masz?\r\n\r\nPozdrawiam,\r\nJan",
    "email_sv_anon_1.txt": (
        "Hej\n\nBerättar gärna. Enklast är om vi kan ta ett kort samtal under dagen. Jag är\n"
        "flexibel fram till kl 15 idag.\n\nMvh,\nPerson A\n070-0000000"
    ),
    "email_swedish_1.txt": (
        "Hej Person A,\n\nUrsäkta mitt sena svar!\n\nKan inte se att det står något om vilket företag det gäller? "
        "\n\nMvh,\nPerson B"
    ),
    "email_swedish_2.txt": (
        "Hello Anna,\n\nIt's amazing I would love to ofcourse to be in such large scale project but\n"
        "unfortunately I have a contract till end of the year .. lets keep in touch and\n"
        "will update you once I am available\n\n/John"
    ),
    "multi_header.txt": "No problem. I’ll just start a new order.",
    "outlook.txt": (
        "Dear Team,\n\nHello\n\nWhat is the best way to clear a Riak bucket of all key, values after\n"
        "running a test?\n\nMy number is: +00 0000 000 000"
    ),
}

OWN_FIXTURES: dict[str, str | None] = {
    "outlook_tr.txt": (
        "Merhaba,\n\nSorun hâlâ devam ediyor, ekran görüntüsünü ekte gönderiyorum.\n\nSaygılarımla,\nAyşe Yılmaz"
    ),
    "outlook_de.txt": (
        "Hallo zusammen,\n\ndas Problem ist gelöst, das Ticket kann geschlossen werden.\n\nViele Grüße\nJens Müller"
    ),
    "gmail_tr.txt": "Merhaba,\n\nYeni şifreyle giriş yapabildim, teşekkürler.",
    "gmail_en_wrapped.txt": "Thanks, that fixed it.\nYou can close the ticket.",
    "apple_mail.txt": "Works now, thank you!",
    "thunderbird.txt": (
        'Hi,\n\nthis is the error from the log:\n\n    ERROR printer.spool: queue "office-2" not found (code 42)\n'
        "        at spool.submit\n\nRegards,\nJane"
    ),
    "signature.txt": "Hello,\n\nI still cannot log in -- the reset link says it has expired.",
    "all_quote.txt": UNCHANGED,  # nothing new: the whole mail is kept rather than lost
}


def _check(path: Path, expected: str | None) -> None:
    text = _read(path)
    assert strip_reply(text) == (text.rstrip() if expected is UNCHANGED else expected)


@pytest.mark.parametrize(("name", "expected"), ZAPIER.items(), ids=list(ZAPIER))
def test_zapier_corpus(name: str, expected: str | None) -> None:
    _check(CORPUS / "zapier-email-reply-parser" / name, expected)


@pytest.mark.parametrize(("name", "expected"), MAIL_PARSER_REPLY.items(), ids=list(MAIL_PARSER_REPLY))
def test_mail_parser_reply_corpus(name: str, expected: str | None) -> None:
    _check(CORPUS / "mail-parser-reply" / name, expected)


@pytest.mark.parametrize(("name", "expected"), OWN_FIXTURES.items(), ids=list(OWN_FIXTURES))
def test_own_fixtures(name: str, expected: str | None) -> None:
    _check(REPLIES / name, expected)


def test_corpus_copies_carry_license_and_provenance() -> None:
    for folder in ("zapier-email-reply-parser", "mail-parser-reply"):
        assert (CORPUS / folder / "LICENSE").is_file()
        assert (CORPUS / folder / "PROVENANCE.txt").is_file()


INLINE_CUTS = {
    "gmail-de-wrapped": (
        "Danke!\n\nAm Mo., 23. Nov. 2026 um 10:05 Uhr schrieb Acme Support <\nsupport@acme.example>:\n\n> Hallo\n",
        "Danke!",
    ),
    "thunderbird-de": ("Erledigt.\n\nAm 23.11.2026 um 10:05 schrieb Acme Support:\n> Hallo\n", "Erledigt."),
    "thunderbird-tr": ("Tamam.\n\n23.11.2026 10:05 tarihinde Acme Support yazdı:\n> Merhaba\n", "Tamam."),
    "apple-tr-with-footer": (
        "Teşekkürler.\n\niPhone'umdan gönderildi\n\n23 Kas 2026 tarihinde 10:05 saatinde Acme Support "
        "<support@acme.example> şunları yazdı:\n\n> Merhaba\n",
        "Teşekkürler.",
    ),
    "apple-de-footer": (
        "Passt.\n\nVon meinem iPhone gesendet\n\n> Am 23.11.2026 um 10:05 schrieb Acme <support@acme.example>:\n"
        "> Hallo\n",
        "Passt.",
    ),
    "outlook-ios-tr-footer": ("Tamamdır.\n\niOS için Outlook'u edinin<https://aka.ms/o0ukef>\n", "Tamamdır."),
    "original-message-en": (
        "Please see below.\n\n-----Original Message-----\nFrom: Acme Support\nSent: Monday\n\nOld text\n",
        "Please see below.",
    ),
    "original-message-de": (
        "Siehe unten.\n\n-----Ursprüngliche Nachricht-----\nVon: Acme Support\nGesendet: Montag\n\nAlt\n",
        "Siehe unten.",
    ),
    "original-message-tr": (
        "Aşağıya bakınız.\n\n-----Özgün İleti-----\nKimden: Acme Destek\nGönderildi: Pazartesi\n\nEski\n",
        "Aşağıya bakınız.",
    ),
    "outlook-tr-no-rule": (
        "Oldu.\n\nKimden: Acme Destek <support@acme.example>\nGönderildi: 23 Kasım 2026 10:05\n"
        "Kime: ayse@musteri.example\nKonu: [#1042] Test\n\nEski metin\n",
        "Oldu.",
    ),
    "gmail-forward": (
        "FYI, see the customer's mail.\n\n---------- Forwarded message ---------\nFrom: Customer <c@example.com>\n"
        "Date: Mon, 23 Nov 2026 at 10:05\nSubject: Broken\nTo: <support@acme.example>\n\nIt is broken.\n",
        "FYI, see the customer's mail.",
    ),
    "gmail-nl": (
        "Bedankt!\n\nOp ma 23 nov 2026 om 10:05 schreef Acme <support@acme.example>:\n\n> Hallo\n",
        "Bedankt!",
    ),
    "gmail-fr": (
        "Merci.\n\nLe lun. 23 nov. 2026 à 10:05, Acme <support@acme.example> a écrit :\n> Bonjour\n",
        "Merci.",
    ),
    "gmail-es": (
        "Gracias.\n\nEl lun, 23 nov 2026 a las 10:05, Acme (<s@acme.example>) escribió:\n> Hola\n",
        "Gracias.",
    ),
    "gmail-pl": ("Dzięki.\n\npon., 23 lis 2026 o 10:05 Acme <support@acme.example> napisał(a):\n> Cześć\n", "Dzięki."),
    "interleaved": ("> Question one?\nAnswer one.\n\n> Question two?\nAnswer two.\n", "Answer one.\n\nAnswer two."),
    "bare-dash-signature": ("Hi\n--\nBob\n", "Hi"),
    "crlf-kept-inside": (
        "Line one\r\nLine two\r\n\r\nOn Mon, Nov 23, 2026 at 10:05 AM A <a@example.com> wrote:\r\n> q\r\n",
        "Line one\r\nLine two",
    ),
    "leading-blank-lines-not-indentation": ("\n\n    indented\nmore\n> quoted\n", "    indented\nmore"),
}


@pytest.mark.parametrize(("text", "expected"), INLINE_CUTS.values(), ids=list(INLINE_CUTS))
def test_inline_cuts(text: str, expected: str) -> None:
    assert strip_reply(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "From: Berlin\nTo: Munich\n\nPlease quote the shipment.",  # two fields are prose, not an Outlook block
        "On Monday my colleague wrote:\nthe printer is broken.",  # no date: not an attribution
        "Hi\n\nSent from my laptop, because the phone is broken.",
        "Plain text\n\nwith no quote at all.",
        "",
    ],
)
def test_text_without_history_is_kept(text: str) -> None:
    assert strip_reply(text) == text


def test_whitespace_only_stays_empty() -> None:
    assert strip_reply("  \n\n") == ""


def test_images_only_in_the_quoted_history_are_recognised() -> None:
    from ticketd.parsers.quotes import quoted_only_cids

    html = ('<p>See my new photo <img src="cid:new1@x"></p><div class="gmail_quote">On … wrote:'
            '<blockquote><img src="cid:logo@acme"><img src="cid:NEW1@x"></blockquote></div>')
    assert quoted_only_cids(html) == {"logo@acme"}
    assert quoted_only_cids('<p><img src="cid:a@b"></p>') == set()
    assert quoted_only_cids(None) == set()
