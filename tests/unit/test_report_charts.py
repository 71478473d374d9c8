"""The report's charts: valid PNGs, the right texts in both languages, and bars that show the data.

The pixel checks look at the rendered image the way a reader would (colours, columns, heights) instead of
comparing with golden files, so they survive font and matplotlib version changes.
"""

from __future__ import annotations

import io
import itertools
import math
import subprocess
import sys
import threading
import warnings
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from ticketd.daemon.reports.charts import (
    CHARTS,
    SATISFACTION_COLOURS,
    SLA_TARGET,
    TYPE_COLOURS,
    draw_charts,
    figures,
)
from ticketd.daemon.reports.data import ReportData, Scope
from ticketd.daemon.reports.figures import SatisfactionFigures, SlaFigures, TicketRow

MONTHS = ["2025-10", "2025-11", "2025-12", "2026-01", "2026-02", "2026-03"]
TYPES = ["request", "complaint", "information"]
COUNTS = {  # type -> tickets per month
    "request": [5, 8, 3, 6, 9, 4],
    "complaint": [2, 1, 4, 0, 3, 2],
    "information": [1, 3, 2, 2, 0, 5],
}
CATEGORIES = [  # 60 tickets, eleven categories: the chart shows ten
    ("Billing", 14), ("Delivery", 11), ("Login", 9), ("Hardware", 7), ("Invoice copy", 6),
    ("Şifre sıfırlama", 5), ("Returns", 3), ("Warranty", 2), ("", 1), ("Installation", 1), ("Other", 1),
]
SLA = {  # month -> ((met, missed) first response, (met, missed) resolution); 2025-12 measured nothing
    "2025-10": ((7, 1), (6, 2)),
    "2025-11": ((12, 0), (9, 3)),
    "2025-12": ((0, 0), (0, 0)),
    "2026-01": ((6, 2), (7, 1)),
    "2026-02": ((10, 2), (11, 1)),
    "2026-03": ((9, 2), (0, 0)),  # nothing resolved is due yet
}
SATISFACTION = {  # month -> (satisfied, not satisfied, no answer); 2026-03 has no resolved tickets yet
    "2025-10": (4, 1, 3),
    "2025-11": (6, 2, 4),
    "2025-12": (3, 0, 5),
    "2026-01": (5, 1, 2),
    "2026-02": (7, 3, 2),
}


def _ticket(number: int, created: datetime, kind: str, category: str) -> TicketRow:
    due = created + timedelta(hours=8)
    return TicketRow(
        number=number, subject=f"Ticket {number}", state="closed", type=kind, category=category,
        priority="normal", source="email", requester=f"customer{number % 7}@example.com",
        requester_name=f"Customer {number % 7}", company="Acme" if number % 2 else "", assignee="ayse@helpdesk.example",
        group="support", created_at=created, first_response_due=due, first_response_at=created + timedelta(hours=2),
        resolution_due=due + timedelta(days=2), resolution_at=created + timedelta(days=1),
        closed_at=created + timedelta(days=3), within_contract=True, root_cause="", action_plan="", cost="",
        resolution="Done.", satisfaction="satisfied" if number % 3 else "", first_response_hours=2.0,
        resolution_hours=9.0, first_response_met=True, resolution_met=True,
    )


def make_data() -> ReportData:
    """Six months of a small helpdesk, every figure consistent with the ticket list."""
    categories = [name for name, count in CATEGORIES for _ in range(count)]
    tickets = []
    for m, month in enumerate(MONTHS):
        start = datetime.strptime(month, "%Y-%m") + timedelta(hours=9)
        for kind in TYPES:
            for i in range(COUNTS[kind][m]):
                number = len(tickets) + 1
                tickets.append(_ticket(number, start + timedelta(days=i, minutes=number), kind, categories[number - 1]))
    by_category = Counter(t.category or "(none)" for t in tickets)
    by_month_category: dict[str, dict[str, int]] = {month: {} for month in MONTHS}
    for t in tickets:
        cell = by_month_category[t.month]
        cell[t.category or "(none)"] = cell.get(t.category or "(none)", 0) + 1
    sla_by_month = {
        month: (SlaFigures(met=fr[0], missed=fr[1]), SlaFigures(met=res[0], missed=res[1]))
        for month, (fr, res) in SLA.items()
    }
    satisfaction_by_month = {month: SatisfactionFigures(*SATISFACTION.get(month, (0, 0, 0))) for month in MONTHS}
    return ReportData(
        scope=Scope(), generated_at=datetime(2026, 4, 1, 8, 0), timezone="Europe/Istanbul", tickets=tickets,
        months=list(MONTHS), types=list(TYPES),
        by_month_type={month: {kind: COUNTS[kind][m] for kind in TYPES} for m, month in enumerate(MONTHS)},
        by_month_category=by_month_category,
        top_categories=sorted(by_category.items(), key=lambda item: (-item[1], item[0])),
        companies=[], customers=[],
        first_response=SlaFigures(met=sum(v[0][0] for v in SLA.values()), missed=sum(v[0][1] for v in SLA.values())),
        resolution=SlaFigures(met=sum(v[1][0] for v in SLA.values()), missed=sum(v[1][1] for v in SLA.values())),
        sla_by_month=sla_by_month,
        satisfaction=SatisfactionFigures(*(sum(v[i] for v in SATISFACTION.values()) for i in range(3))),
        satisfaction_by_month=satisfaction_by_month, agents=[],
    )


def make_empty(months: list[str]) -> ReportData:
    return ReportData(
        scope=Scope(), generated_at=datetime(2026, 4, 1, 8, 0), timezone="Europe/Istanbul", tickets=[],
        months=months, types=list(TYPES), by_month_type={m: dict.fromkeys(TYPES, 0) for m in months},
        by_month_category={m: {} for m in months}, top_categories=[], companies=[], customers=[],
        first_response=SlaFigures(), resolution=SlaFigures(),
        sla_by_month={m: (SlaFigures(), SlaFigures()) for m in months},
        satisfaction=SatisfactionFigures(), satisfaction_by_month={m: SatisfactionFigures() for m in months}, agents=[],
    )


def render(fig: Figure, dpi: int = 100) -> np.ndarray:
    """The figure as the PNG a reader gets, as RGB rows (top row first)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB")).astype(int)


def crop(pixels: np.ndarray, fig: Figure, artist_extent: tuple[float, float, float, float]) -> np.ndarray:
    """Cut a display-space box (origin bottom left, as matplotlib reports it) out of the image, a pixel inside."""
    x0, y0, x1, y1 = artist_extent
    height = pixels.shape[0]
    return pixels[height - math.floor(y1) + 1: height - math.ceil(y0) - 1, math.ceil(x0) + 1: math.floor(x1) - 1]


def colour_mask(pixels: np.ndarray, colour: str, tolerance: int = 2) -> np.ndarray:
    rgb = np.array([round(c * 255) for c in to_rgb(colour)])
    return np.all(np.abs(pixels - rgb) <= tolerance, axis=2)


def runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """The [start, end) index ranges where flags is true."""
    result, start = [], None
    for i, flag in enumerate([*flags.tolist(), False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            result.append((start, i))
            start = None
    return result


def bars(fig: Figure) -> list[Rectangle]:
    return [patch for container in fig.axes[0].containers for patch in container.patches]


@pytest.mark.parametrize(("language", "dpi"), [("en", 100), ("tr", 100), ("en", 72), ("tr", 150)])
def test_every_chart_is_a_png_of_the_fixed_size(tmp_path: Path, language: str, dpi: int) -> None:
    directory = tmp_path / "reports" / "2026-03"  # does not exist yet
    paths = draw_charts(make_data(), directory, language=language, dpi=dpi)
    assert list(paths) == list(CHARTS)
    assert sorted(p.name for p in directory.iterdir()) == sorted(f"{name}.png" for name in CHARTS)  # no leftovers
    for name, path in paths.items():
        assert path == directory / f"{name}.png"
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.size == (round(9 * dpi), round(4.5 * dpi))
            colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
            assert colours is not None and len(colours) > 20, name  # antialiased text and coloured marks


def test_drawing_again_replaces_the_files(tmp_path: Path) -> None:
    first = draw_charts(make_data(), tmp_path, dpi=50)
    second = draw_charts(make_empty(MONTHS), tmp_path, language="tr", dpi=60)
    assert first == second
    with Image.open(second["monthly"]) as image:
        assert image.size == (540, 270)


@pytest.mark.parametrize(("language", "expected"), [
    ("en", {
        "monthly": ("Tickets per month by type", "Month", "Tickets"),
        "categories": ("Most frequent categories", "Tickets", ""),
        "sla": ("SLA compliance per month", "Month", "Deadlines met (%)"),
        "satisfaction": ("Customer satisfaction per month", "Month", "Resolved tickets"),
    }),
    ("tr", {
        "monthly": ("Aylara ve türe göre talepler", "Ay", "Talep"),
        "categories": ("En sık kategoriler", "Talep", ""),
        "sla": ("Aylara göre SLA uyumu", "Ay", "Süresine uyulan (%)"),
        "satisfaction": ("Aylara göre müşteri memnuniyeti", "Ay", "Çözülen talep"),
    }),
])
def test_titles_and_axis_labels(language: str, expected: dict[str, tuple[str, str, str]]) -> None:
    charts = figures(make_data(), language)
    assert list(charts) == list(CHARTS)
    for name, (title, xlabel, ylabel) in expected.items():
        ax = charts[name].axes[0]
        assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == (title, xlabel, ylabel), name


@pytest.mark.parametrize(("language", "expected"), [
    ("en", {
        "monthly": ["request", "complaint", "information"],
        "sla": ["first response", "resolution", "target (90%)"],
        "satisfaction": ["satisfied", "not satisfied", "no answer"],
    }),
    ("tr", {
        "monthly": ["talep", "şikâyet", "bilgi"],
        "sla": ["ilk yanıt", "çözüm", "hedef (%90)"],
        "satisfaction": ["memnun", "memnun değil", "yanıt yok"],
    }),
])
def test_legends(language: str, expected: dict[str, list[str]]) -> None:
    charts = figures(make_data(), language)
    for name, texts in expected.items():
        legend = charts[name].axes[0].get_legend()
        assert legend is not None, name
        assert [t.get_text() for t in legend.get_texts()] == texts, name
    assert charts["categories"].axes[0].get_legend() is None


@pytest.mark.parametrize("language", ["en", "tr"])
def test_month_labels_are_readable(language: str) -> None:
    ax = figures(make_data(), language)["monthly"].axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == (["Oct 2025", "Nov 2025", "Dec 2025", "Jan 2026", "Feb 2026", "Mar 2026"] if language == "en"
                      else ["Eki 2025", "Kas 2025", "Ara 2025", "Oca 2026", "Şub 2026", "Mar 2026"])
    assert all(t.get_rotation() == 0 for t in ax.get_xticklabels())


def test_many_months_are_rotated_and_thinned() -> None:
    data = make_empty([f"{2020 + i // 12}-{i % 12 + 1:02d}" for i in range(40)])
    data.by_month_type["2020-01"]["request"] = 3
    ax = figures(data)["monthly"].axes[0]
    labels = ax.get_xticklabels()
    assert 8 < len(labels) <= 24
    assert labels[0].get_text() == "Jan 2020"
    assert all(t.get_rotation() == 45 for t in labels)


def test_monthly_stacks_equal_the_counts() -> None:
    fig = figures(make_data())["monthly"]
    containers = fig.axes[0].containers
    assert len(containers) == len(TYPES)
    bottoms = [0] * len(MONTHS)
    for kind, container in zip(TYPES, containers, strict=True):
        patches = sorted(container.patches, key=lambda p: p.get_x())
        assert [p.get_height() for p in patches] == COUNTS[kind]
        assert [p.get_y() for p in patches] == bottoms  # stacked on the types before
        assert {p.get_facecolor()[:3] for p in patches} == {to_rgb(TYPE_COLOURS[kind])}
        bottoms = [b + c for b, c in zip(bottoms, COUNTS[kind], strict=True)]
    totals = [t.get_text() for t in fig.axes[0].texts]
    assert totals == [str(b) for b in bottoms]


@pytest.mark.parametrize("language", ["en", "tr"])
def test_categories_most_frequent_on_top(language: str) -> None:
    ax = figures(make_data(), language)["categories"].axes[0]
    patches = bars(ax.figure)
    assert len(patches) == 10  # top ten of eleven
    assert ax.yaxis_inverted()
    # Top to bottom on the screen: the smallest y position is drawn highest on an inverted axis.
    by_screen = sorted(patches, key=lambda p: p.get_y())
    assert [p.get_width() for p in by_screen] == [count for _name, count in CATEGORIES[:10]]
    names = [t.get_text() for t in sorted(ax.get_yticklabels(), key=lambda t: t.get_position()[1])]
    none = "(none)" if language == "en" else "(yok)"
    assert names == [name or none for name, _count in CATEGORIES[:10]]
    assert [t.get_text() for t in ax.texts] == [str(count) for _name, count in CATEGORIES[:10]]  # value labels
    # Value labels sit at the bar ends.
    fig = ax.figure
    render(fig)
    renderer = fig.canvas.get_renderer()
    for patch, label in zip(sorted(patches, key=lambda p: p.get_y()), ax.texts, strict=True):
        bar_end = patch.get_window_extent(renderer).x1
        text = label.get_window_extent(renderer)
        assert 0 <= text.x0 - bar_end < 10


def test_sla_lines_with_gaps_and_target() -> None:
    ax = figures(make_data())["sla"].axes[0]
    first, resolution, target = ax.get_lines()
    expected_first = [87.5, 100.0, math.nan, 75.0, 10 / 12 * 100, 9 / 11 * 100]
    expected_resolution = [75.0, 75.0, math.nan, 87.5, 11 / 12 * 100, math.nan]
    for line, expected in ((first, expected_first), (resolution, expected_resolution)):
        assert list(line.get_xdata()) == list(range(6))
        assert line.get_marker() not in (None, "None", "")
        np.testing.assert_allclose(line.get_ydata(), expected, equal_nan=True)
    assert target.get_linestyle() == "--"
    assert set(target.get_ydata()) == {SLA_TARGET}
    assert ax.get_ylim() == (0, 100)
    assert [t.get_text() for t in ax.get_yticklabels()][-1] == "100%"


def test_satisfaction_stacks() -> None:
    fig = figures(make_data(), "tr")["satisfaction"]
    containers = fig.axes[0].containers
    for i, (key, container) in enumerate(zip(SATISFACTION_COLOURS, containers, strict=True)):
        heights = [p.get_height() for p in sorted(container.patches, key=lambda p: p.get_x())]
        assert heights == [SATISFACTION.get(month, (0, 0, 0))[i] for month in MONTHS]
        assert container.patches[0].get_facecolor()[:3] == to_rgb(SATISFACTION_COLOURS[key])


def test_monthly_chart_pixels_show_the_counts() -> None:
    """Read the rendered bars back from the image: columns left to right, segment heights proportional to counts."""
    fig = figures(make_data())["monthly"]
    pixels = render(fig)
    plot = crop(pixels, fig, fig.axes[0].get_window_extent().extents)  # the legend is outside, so not in here
    masks = {kind: colour_mask(plot, TYPE_COLOURS[kind]) for kind in TYPES}
    columns = runs(np.any(np.stack(list(masks.values())), axis=0).any(axis=0))
    assert len(columns) == len(MONTHS)
    widths = [end - start for start, end in columns]
    assert max(widths) - min(widths) <= 2 and min(widths) > 20
    centres = [(start + end) // 2 for start, end in columns]
    gaps = np.diff(centres)
    assert all(gaps > 0) and max(gaps) - min(gaps) <= 2  # evenly spaced, in month order

    heights = {kind: [int(masks[kind][:, c].sum()) for c in centres] for kind in TYPES}
    total_px = sum(sum(h) for h in heights.values())
    total_count = sum(sum(c) for c in COUNTS.values())
    scale = total_px / total_count  # pixels per ticket
    assert scale > 10
    for kind in TYPES:
        for m, (px, count) in enumerate(zip(heights[kind], COUNTS[kind], strict=True)):
            assert abs(px - count * scale) <= 2.5, (kind, MONTHS[m], px, count * scale)
    # Stack order from the bottom: request, complaint, information.
    for m, c in enumerate(centres):
        rows = {kind: np.flatnonzero(masks[kind][:, c]) for kind in TYPES if COUNTS[kind][m]}
        present = [kind for kind in TYPES if kind in rows]
        for lower, upper in itertools.pairwise(present):
            assert rows[lower].min() > rows[upper].max()  # image rows grow downwards
    # The tallest stack nearly fills the plot (the axis has 10 % headroom for the totals).
    tallest = max(sum(COUNTS[kind][m] for kind in TYPES) for m in range(len(MONTHS)))
    assert abs(tallest * scale / plot.shape[0] - 1 / 1.1) < 0.03


def test_turkish_title_renders() -> None:
    fig = figures(make_data(), "tr")["satisfaction"]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=r".*missing from font")  # a missing letter would be a box
        pixels = render(fig)
    title = fig.axes[0].title
    box = crop(pixels, fig, title.get_window_extent(fig.canvas.get_renderer()).extents)
    ink = box.mean(axis=2) < 128
    assert box.shape[1] > 200
    assert ink.sum() > 300
    inked_columns = np.flatnonzero(ink.any(axis=0))
    assert inked_columns[-1] - inked_columns[0] > 0.9 * (box.shape[1] - 2)  # the text spans its whole box


@pytest.mark.parametrize("months", [[], MONTHS], ids=["no months", "empty months"])
@pytest.mark.parametrize("language", ["en", "tr"])
def test_empty_data_gives_charts_with_a_note(tmp_path: Path, months: list[str], language: str) -> None:
    data = make_empty(months)
    note = "No data" if language == "en" else "Veri yok"
    for name, fig in figures(data, language).items():
        assert [t.get_text() for t in fig.axes[0].texts] == [note], name
        assert fig.axes[0].get_title(), name
    for path in draw_charts(data, tmp_path, language=language).values():
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (900, 450)
            assert len(image.convert("RGB").getcolors(maxcolors=1_000_000) or []) > 5


def test_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="de"):
        figures(make_data(), "de")


def test_draws_in_worker_threads_without_pyplot(tmp_path: Path) -> None:
    """The daemon draws in a worker thread; two at once must not share state (pyplot would)."""
    results: dict[str, dict[str, Path]] = {}

    def work(language: str) -> None:
        results[language] = draw_charts(make_data(), tmp_path / language, language=language)

    threads = [threading.Thread(target=work, args=(language,)) for language in ("en", "tr")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == ["en", "tr"]
    for paths in results.values():
        for path in paths.values():
            with Image.open(path) as image:
                assert image.format == "PNG" and image.size == (900, 450)
    check = "import sys, ticketd.daemon.reports.charts; assert 'matplotlib.pyplot' not in sys.modules"
    subprocess.run([sys.executable, "-c", check], check=True)
