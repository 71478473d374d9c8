"""LanguageGuesser: a stranger's first mail decides the language of every mail they get from us.

Each case is one a customer really sends: Turkish typed with and without Turkish letters, English, languages we
have no templates for (which must stay None, not become en or tr), mails too short to tell, and a Turkish body
under an English signature and disclaimer. The labelled mails and the real-world corpus are checked in bulk.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ticketd.mailtemplates.render import LANGUAGES
from ticketd.parsers.language import MAX_INPUT_CHARS, LanguageGuesser, model_arrays
from ticketd.parsers.message import parse_message
from ticketd.parsers.quotes import strip_reply

DATA = Path(__file__).parents[1] / "data"
LABELLED = DATA / "language" / "labelled.tsv"
CORPUS_LABELS = DATA / "language" / "corpus.tsv"

DISCLAIMER = (
    "This e-mail and any attachments are confidential and intended solely for the addressee. If you have "
    "received this e-mail in error, please notify the sender immediately and delete it from your system. "
    "Any unauthorised use, disclosure or copying of this message is strictly prohibited."
)


@pytest.fixture(scope="module")
def guesser() -> LanguageGuesser:
    # One per module, as the daemon keeps one per process: loading the model is the expensive part.
    return LanguageGuesser(LANGUAGES)


def _first_mail(raw: bytes) -> str:
    """What a caller is meant to pass: the subject and the customer's own words of the body."""
    mail = parse_message(raw)
    return mail.subject + "\n" + strip_reply(mail.text)


def test_turkish_stranger_with_iso_8859_9_body_gets_turkish(guesser: LanguageGuesser) -> None:
    # The reported case: this mail got an English receipt.
    raw = (
        b"From: Ahmet Demir <ahmet@ornek.com.tr>\r\n"
        b"To: destek@acme.example\r\n"
        b"Subject: Faturamda hata var\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=iso-8859-9\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n"
        b"\r\n"
    ) + "Merhaba, bu ay faturam iki kat geldi. Yardımcı olur musunuz?\r\n".encode("iso-8859-9")
    assert guesser.guess(_first_mail(raw)) == "tr"


@pytest.mark.parametrize(
    ("name", "language"),
    [
        ("iso-8859-9-body.eml", "tr"),
        ("known-customer-rfc2047-subject.eml", "tr"),
        ("charsets/tr-iso-8859-9.eml", "tr"),
        ("charsets/tr-windows-1254.eml", "tr"),
        ("process/complaint-tr.eml", "tr"),
        ("process/invoice-request.eml", "tr"),
        ("unknown-sender.eml", "en"),
        ("process/complaint-with-attachment.eml", "en"),
        ("process/information-question.eml", "en"),
    ],
)
def test_our_fixture_mails(guesser: LanguageGuesser, name: str, language: str) -> None:
    assert guesser.guess(_first_mail((DATA / name).read_bytes())) == language


@pytest.mark.parametrize(
    "text",
    [
        "modem calismiyor yardim edin",
        "Sifremi unuttum\nMerhaba sifremi unuttum giris yapamiyorum, sifre sifirlama maili de gelmiyor. "
        "Yardimci olur musunuz?",
        "fatura yanlis\nbu ay faturam cok yuksek geldi, kullanmadigim bir paket icin ucret alinmis. iade istiyorum",
        "VPN baglanmiyor\nEvden VPN'e baglanamiyorum, 809 hatasi veriyor. Gecen hafta sorunsuz calisiyordu.",
    ],
)
def test_turkish_without_turkish_letters(guesser: LanguageGuesser, text: str) -> None:
    # Phones and foreign keyboards drop ç, ğ, ı, ö, ş, ü; the words are still Turkish.
    assert guesser.guess(text) == "tr"


@pytest.mark.parametrize(
    "text",
    [
        "Teşekkürler",
        "Şifremi unuttum\nHesabıma giriş yapamıyorum, şifre sıfırlama e-postası da gelmiyor. Lütfen yardım edin.",
        "Outlook açılmıyor, Exchange server hatası veriyor, VPN de bağlanmıyor.",  # English product names
        "İnternet bağlantım kopuyor\nMerhaba,\nİki gündür internet bağlantım her yarım saatte bir kopuyor.\n"
        "Modemi yeniden başlattım ama düzelmedi. Ne yapmam gerekiyor?\nTeşekkürler",
    ],
)
def test_turkish_with_turkish_letters(guesser: LanguageGuesser, text: str) -> None:
    assert guesser.guess(text) == "tr"


@pytest.mark.parametrize(
    "text",
    [
        "Can't log in\nI can't log into my account since this morning. The password reset email never arrives.",
        "internet not working\ninternet not working since yesterday, router lights are blinking orange. pls help",
        "Refund request\nI returned the jacket two weeks ago (order #48213) but still haven't received my refund.",
    ],
)
def test_english(guesser: LanguageGuesser, text: str) -> None:
    assert guesser.guess(text) == "en"


@pytest.mark.parametrize(
    "text",
    [
        "Rechnung fehlerhaft\nGuten Tag,\nauf meiner Rechnung für März wurde der Tarif doppelt berechnet. "
        "Bitte korrigieren Sie das.\n\nMit freundlichen Grüßen\nJörg Weber",
        "Der Server ist down, bitte checken. Seit heute früh kommt keiner mehr rein.",  # English words inside
        "Facture incorrecte\nBonjour, ma facture de mars comporte deux fois le même abonnement. "
        "Pouvez-vous corriger et me rembourser ?",
        "No tengo internet\nDesde ayer por la noche no tengo internet y el router parpadea en rojo. ¿Qué hago?",
        "Geen internet\nSinds gisteravond heb ik geen internet meer, het modem knippert rood. Wat moet ik doen?",
        # Turkish's neighbours: close enough to be mistaken for it, but we have no templates for them.
        "İnternet işləmir\nSalam, internetim iki gündür işləmir. Kömək edə bilərsinizmi?",
        "Internet ishlamayapti\nSalom, internet ishlamayapti, yordam bering.",
        "お世話になっております。請求書の金額が間違っているようです。ご確認をお願いいたします。",
    ],
)
def test_languages_without_templates_are_none(guesser: LanguageGuesser, text: str) -> None:
    assert guesser.guess(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n\n  ",
        "Hi",
        "ok",
        "Merhaba",
        "Yardım",  # Turkish, but one word: one-word guesses were right a third of the time
        "?",
        "12345 / 2026-11-23",
        "https://example.com/ticket/48213?lang=en",
        "jane.doe@example.org\n+90 212 555 00 00",
        "> Merhaba, faturam iki kat geldi. Yardımcı olur musunuz?",  # quoted history only
    ],
)
def test_too_little_text_is_none(guesser: LanguageGuesser, text: str) -> None:
    assert guesser.guess(text) is None


@pytest.mark.parametrize(
    "signature",
    [
        "\n\nBest regards,\nAhmet Yılmaz\nIT Manager | ACME Ltd.\nTel: +90 212 555 00 00",
        f"\n\nBest regards,\nAhmet Yılmaz\nIT Manager | ACME Ltd.\n\n{DISCLAIMER}",
        f"\n-- \nAhmet Yilmaz\nIT Manager | ACME Ltd.\n{DISCLAIMER}",
    ],
)
@pytest.mark.parametrize(
    "body",
    [
        "Merhaba,\nModemim iki gündür çalışmıyor, ışıklar yanıp sönüyor. Yardımcı olur musunuz?",
        "Merhaba,\nmodemim iki gundur calismiyor, isiklar yanip sonuyor. Yardimci olur musunuz?",
        "Merhaba, faturam yanlış geldi, iki kez ödeme alınmış.",
    ],
)
def test_turkish_body_under_english_signature_is_turkish(guesser: LanguageGuesser, body: str, signature: str) -> None:
    # Each disclaimer alone outweighs the Turkish words; read whole, the mail would look English.
    assert guesser.guess(body + signature) == "tr"


def test_links_and_numbers_are_not_words(guesser: LanguageGuesser) -> None:
    # Read as words, the link is English enough to drown three Turkish words.
    text = "Siparişim gelmedi\nSipariş no: ORD-2026-48213, takip: https://track.example.com/shipment/status/delivered"
    assert guesser.guess(text) == "tr"


def test_an_unsure_answer_is_withheld(guesser: LanguageGuesser) -> None:
    # The model's top answer here is English, at 0.08: better no answer than the wrong one.
    assert guesser.guess("slm internet yok") != "en"


def test_english_reply_above_quoted_turkish_is_english(guesser: LanguageGuesser) -> None:
    text = (
        "Thanks, that fixed it. You can close the ticket.\n\n"
        + "\n".join(f"> {line}" for line in ["Merhaba,", "Şifreniz sıfırlandı. Lütfen tekrar deneyin."] * 20)
    )
    assert guesser.guess(text) == "en"


def test_only_the_opening_of_a_huge_mail_is_read(guesser: LanguageGuesser) -> None:
    turkish = "Merhaba, bu ay faturam iki kat geldi. Yardımcı olur musunuz? "
    text = turkish * (MAX_INPUT_CHARS // len(turkish) + 1) + "The rest is English. " * 50_000
    assert guesser.guess(text) == "tr"
    links = "https://example.com/a/long/link/to/the/order/page\n" * (MAX_INPUT_CHARS // 20)
    assert guesser.guess(links + turkish) is None  # the first words lie past the bound


def test_a_language_is_answered_only_when_it_has_templates() -> None:
    english_only = LanguageGuesser(["en"])
    assert english_only.guess("Faturamda hata var\nMerhaba, bu ay faturam iki kat geldi.") is None
    assert english_only.guess("Can't log in\nThe password reset email never arrives.") == "en"


def test_a_template_language_the_model_cannot_recognise_is_refused() -> None:
    with pytest.raises(ValueError, match="xx"):
        LanguageGuesser(["en", "xx"])


def _labelled() -> Iterator[tuple[str, str, str]]:
    for line in LABELLED.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            language, subject, body = line.split("\t")
            yield language, subject, body.replace("\\n", "\n")


def test_labelled_mails(guesser: LanguageGuesser) -> None:
    answers = [(language, guesser.guess(f"{subject}\n{body}")) for language, subject, body in _labelled()]
    ours = [(language, got) for language, got in answers if language in LANGUAGES]
    others = [(language, got) for language, got in answers if language not in LANGUAGES]
    assert len(ours) >= 75 and len(others) >= 50
    assert [pair for pair in others if pair[1] is not None] == []
    assert [pair for pair in ours if pair[1] is not None and pair[1] != pair[0]] == []
    right = sum(language == got for language, got in ours)
    assert right >= len(ours) - 2, f"{right} of {len(ours)} en/tr mails recognised"


def test_real_mails_of_other_languages_are_not_taken_for_ours(guesser: LanguageGuesser) -> None:
    answers: list[tuple[str, str, str | None]] = []
    for line in CORPUS_LABELS.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        language, name = line.split("\t")
        raw = (DATA / "corpus" / name).read_bytes()
        text = strip_reply(raw.decode("utf-8", "replace")) if name.endswith(".txt") else _first_mail(raw)
        answers.append((language, name, guesser.guess(text)))
    others = [(name, got) for language, name, got in answers if language not in LANGUAGES]
    english = [(name, got) for language, name, got in answers if language == "en"]
    assert len(others) >= 40 and len(english) >= 20
    assert [(name, got) for name, got in others if got is not None] == []
    assert [(name, got) for name, got in english if got not in ("en", None)] == []
    assert sum(got == "en" for _, got in english) >= len(english) - 3


def test_the_mapped_model_answers_as_the_loaded_one(guesser: LanguageGuesser, tmp_path: Path) -> None:
    """The daemon maps the model from its cache folder; every labelled prefix gets the same answer and
    probability as from the model loaded into memory."""
    mapped = LanguageGuesser(LANGUAGES, tmp_path)
    [folder] = tmp_path.glob("py3langid-*")
    assert sorted(p.name for p in folder.iterdir()) == ["classes.npy", "nextmove.npy", "nextmove_row.npy",
                                                        "out_feat.npy", "pc.npy", "ptc.npy"]
    texts = [f"{subject}\n{body}" for _, subject, body in _labelled()]
    texts += [text[:n] for text in texts[::7] for n in (12, 30, 80)]
    for text in texts:
        assert mapped.guess(text) == guesser.guess(text), text
        assert mapped._identifier.classify(text) == guesser._identifier.classify(text), text
    again = LanguageGuesser(LANGUAGES, tmp_path)  # the next start: the same folder, nothing made again
    assert [p.name for p in tmp_path.iterdir()] == [folder.name] and again.guess(texts[0]) == guesser.guess(texts[0])


def test_an_unwritable_cache_loads_the_model_into_memory(tmp_path: Path) -> None:
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    assert model_arrays(blocked / "sub") is None
    fallback = LanguageGuesser(LANGUAGES, blocked / "sub")
    assert fallback.guess("Can't log in\nThe password reset email never arrives.") == "en"


def test_the_cache_folder_follows_systemd_then_xdg_then_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ticketd.daemon.config import cache_folder

    monkeypatch.setenv("CACHE_DIRECTORY", f"{tmp_path}/unit:{tmp_path}/other")
    assert cache_folder() == tmp_path / "unit"
    monkeypatch.delenv("CACHE_DIRECTORY")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_folder() == tmp_path / "xdg" / "ticketd"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_folder() == tmp_path / "home" / ".cache" / "ticketd"

    def homeless() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", homeless)
    assert cache_folder() is None  # the model is loaded into memory then
