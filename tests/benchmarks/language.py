"""What guessing a stranger's language costs and how often it is right, for ticketd.parsers.language.

Usage:

    .venv/bin/python tests/benchmarks/language.py [--passes 20]

The texts are the labelled helpdesk mails of tests/data/language/labelled.tsv, each as its subject, its first
sentence, its body and the whole mail (subject, line break, body), and the hand-labelled real mails listed in
tests/data/language/corpus.tsv (subject and the new text of the body, as the daemon would pass them).

Printed:

- cost: time to import the library and to build one ``LanguageGuesser`` (the model load), resident memory
  before, after the build and at the end (peak), and the latency of ``guess`` over every text ``--passes``
  times: percentiles, mean and calls per second on one core;
- accuracy, per kind of text: how many en/tr texts got their language, no answer, or the other one, and how
  many texts in a language without templates were answered en or tr (the error that matters most: the answer
  is stored for the customer).
"""

from __future__ import annotations

import argparse
import re
import resource
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"
LABELLED = DATA / "language" / "labelled.tsv"
CORPUS_LABELS = DATA / "language" / "corpus.tsv"

_SENTENCE_END = re.compile(r"(?<=[.?!])\s+|\n")


def _rss_mib() -> float:
    # ru_maxrss is the peak so far, in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _labelled() -> list[tuple[str, str, str]]:
    """(language, kind, text) for every labelled mail, in four sizes."""
    texts: list[tuple[str, str, str]] = []
    for line in LABELLED.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        language, subject, body = line.split("\t")
        body = body.replace("\\n", "\n")
        texts.append((language, "subject", subject))
        sentences = [part for part in _SENTENCE_END.split(body.strip()) if len(part.split()) >= 3]
        if sentences:
            texts.append((language, "first sentence", sentences[0]))
        texts.append((language, "body", body))
        texts.append((language, "whole mail", f"{subject}\n{body}"))
    return texts


def _corpus() -> list[tuple[str, str, str]]:
    from ticketd.parsers.message import parse_message
    from ticketd.parsers.quotes import strip_reply

    texts: list[tuple[str, str, str]] = []
    for line in CORPUS_LABELS.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        language, name = line.split("\t")
        raw = (DATA / "corpus" / name).read_bytes()
        if name.endswith(".txt"):
            text = strip_reply(raw.decode("utf-8", "replace"))
        else:
            mail = parse_message(raw)
            text = mail.subject + "\n" + strip_reply(mail.text)
        texts.append((language, "real mail", text))
    return texts


def _percentile(sorted_values: Sequence[float], share: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(share * len(sorted_values)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Cost and accuracy of the language guess.")
    parser.add_argument("--passes", type=int, default=20, help="timed passes over all texts (default 20)")
    args = parser.parse_args(argv)

    texts = _labelled() + _corpus()  # the mail parser is loaded here, before the baseline below
    rss_start = _rss_mib()

    started = time.perf_counter()
    from ticketd.mailtemplates.render import LANGUAGES
    from ticketd.parsers import language

    imported = time.perf_counter()
    guesser = language.LanguageGuesser(LANGUAGES)
    built = time.perf_counter()
    rss_built = _rss_mib()

    answers = [(expected, kind, guesser.guess(text)) for expected, kind, text in texts]  # also warms up

    latencies: list[float] = []
    clock = time.perf_counter_ns
    for _ in range(args.passes):
        for _, _, text in texts:
            before = clock()
            guesser.guess(text)
            latencies.append((clock() - before) / 1e6)
    latencies.sort()
    total_ms = sum(latencies)

    print(f"ticketd.parsers.language with py3langid {_version('py3langid')}, templates {', '.join(LANGUAGES)}")
    print(f"  thresholds: MIN_LETTERS {language.MIN_LETTERS}, MIN_PROBABILITY {language.MIN_PROBABILITY}, "
          f"STEPS {language.STEPS}, MAX_INPUT_CHARS {language.MAX_INPUT_CHARS}")
    print(f"  import {1000 * (imported - started):.0f} ms, build {1000 * (built - imported):.0f} ms")
    print(f"  RSS: {rss_start:.0f} MiB before import, {rss_built:.0f} MiB after build "
          f"(+{rss_built - rss_start:.0f}), peak {_rss_mib():.0f} MiB")
    print(f"  guess: {len(latencies)} calls ({len(texts)} texts x {args.passes}); "
          + ", ".join(f"p{int(share * 100)} {_percentile(latencies, share):.3f} ms" for share in (0.5, 0.9, 0.95, 0.99))
          + f", max {latencies[-1]:.3f} ms, mean {statistics.fmean(latencies):.3f} ms, "
          f"{1000 * len(latencies) / total_ms:,.0f} calls/s on one core")

    print("\naccuracy (right / no answer / the other template language), and other languages answered en or tr:")
    kinds = list(dict.fromkeys(kind for _, kind, _ in answers))
    for kind in kinds:
        ours = Counter(
            "right" if got == expected else "none" if got is None else "wrong"
            for expected, k, got in answers
            if k == kind and expected in LANGUAGES
        )
        others = [(expected, got) for expected, k, got in answers if k == kind and expected not in LANGUAGES]
        mistaken = Counter(f"{expected}->{got}" for expected, got in others if got is not None)
        total = sum(ours.values())
        print(f"  {kind:15s} en/tr {ours['right']:3d}/{total:<3d} ({100 * ours['right'] / total:5.1f}%)  "
              f"none {ours['none']:3d}  wrong {ours['wrong']:2d}   |   other languages: "
              f"{sum(mistaken.values())}/{len(others)} answered en/tr" + (f" {dict(mistaken)}" if mistaken else ""))
    for expected in LANGUAGES:
        whole = [got for exp, kind, got in answers if exp == expected and kind == "whole mail"]
        real = [got for exp, kind, got in answers if exp == expected and kind == "real mail"]
        print(f"  {expected}: whole labelled mails {whole.count(expected)}/{len(whole)}"
              + (f", real mails {real.count(expected)}/{len(real)}" if real else ""))
    return 0


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
