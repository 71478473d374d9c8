"""The report's charts as PNG files, drawn from the same ``ReportData`` as the workbook and the report mail.

The daemon draws them in a worker thread, so this module never touches pyplot: pyplot keeps global state (the
current figure, a registry of open figures) that is neither thread-safe nor freed unless closed.  Each chart is a
standalone ``Figure`` with its own Agg canvas and is garbage once the caller drops it.  Fonts and colours are set
per artist rather than through ``rcParams`` for the same reason: rcParams are process-wide.

Every chart has a fixed size so that PNGs look the same in every report mail, and every chart is drawn even when
its part of the data is empty (with a "no data" note): a reader should see that there was nothing, not a missing
attachment.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Literal

from babel.dates import format_date
from babel.numbers import format_decimal, format_percent
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from ticketd.daemon.reports.data import ReportData
from ticketd.daemon.reports.figures import SatisfactionFigures

CHARTS = ("monthly", "categories", "sla", "satisfaction")

SIZE = (9.0, 4.5)  # inches
FONT = "DejaVu Sans"  # bundled with matplotlib, so present everywhere; has the Turkish letters
TITLE_SIZE = 13
LABEL_SIZE = 11
TICK_SIZE = 9
LEGEND_SIZE = 9
TOP_CATEGORIES = 10
SLA_TARGET = 90.0  # percent
MAX_MONTH_LABELS = 24  # beyond this only every n-th month is labelled, so labels do not overlap
ROTATE_AFTER = 8  # months; more labels than this are rotated
CATEGORY_LABEL_CHARS = 40

# Fixed colours, so a type looks the same in every chart and every report (and tests can find it in the pixels).
TYPE_COLOURS = {"request": "#4c72b0", "complaint": "#dd8452", "information": "#55a868"}
OTHER_COLOURS = ("#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd")
CATEGORY_COLOUR = "#4c72b0"
FIRST_RESPONSE_COLOUR = "#4c72b0"
RESOLUTION_COLOUR = "#dd8452"
TARGET_COLOUR = "#c44e52"
SATISFACTION_COLOURS = {"satisfied": "#55a868", "not_satisfied": "#c44e52", "no_answer": "#b0b0b0"}
NOTE_COLOUR = "#666666"
GRID_COLOUR = "#dddddd"

DEFAULT_TYPES = ("request", "complaint", "information")

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "monthly.title": "Tickets per month by type",
        "categories.title": "Most frequent categories",
        "sla.title": "SLA compliance per month",
        "satisfaction.title": "Customer satisfaction per month",
        "month": "Month",
        "tickets": "Tickets",
        "resolved": "Resolved tickets",
        "met": "Deadlines met (%)",
        "no_data": "No data",
        "type.request": "request",
        "type.complaint": "complaint",
        "type.information": "information",
        "category.none": "(none)",
        "first_response": "first response",
        "resolution": "resolution",
        "target": "target",
        "satisfied": "satisfied",
        "not_satisfied": "not satisfied",
        "no_answer": "no answer",
    },
    "tr": {
        "monthly.title": "Aylara ve türe göre talepler",
        "categories.title": "En sık kategoriler",
        "sla.title": "Aylara göre SLA uyumu",
        "satisfaction.title": "Aylara göre müşteri memnuniyeti",
        "month": "Ay",
        "tickets": "Talep",
        "resolved": "Çözülen talep",
        "met": "Süresine uyulan (%)",
        "no_data": "Veri yok",
        "type.request": "talep",
        "type.complaint": "şikâyet",
        "type.information": "bilgi",
        "category.none": "(yok)",
        "first_response": "ilk yanıt",
        "resolution": "çözüm",
        "target": "hedef",
        "satisfied": "memnun",
        "not_satisfied": "memnun değil",
        "no_answer": "yanıt yok",
    },
}


def figures(data: ReportData, language: str = "en") -> dict[str, Figure]:
    """Build every chart, keyed by the names in ``CHARTS``; separate from saving so tests can read the artists."""
    if language not in TEXTS:
        raise ValueError(f"no chart texts for language {language!r}; known: {', '.join(TEXTS)}")
    builders: dict[str, Callable[[Axes, ReportData, str], None]] = {
        "monthly": _monthly,
        "categories": _categories,
        "sla": _sla,
        "satisfaction": _satisfaction,
    }
    result: dict[str, Figure] = {}
    for name in CHARTS:
        # The tight layout engine runs at draw time, so it fits the text as rendered at the dpi of the save.
        fig = Figure(figsize=SIZE, layout="tight")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.tick_params(labelsize=TICK_SIZE, labelfontfamily=FONT)
        builders[name](ax, data, language)
        result[name] = fig
    return result


def draw_charts(data: ReportData, directory: Path, language: str = "en", dpi: int = 100) -> dict[str, Path]:
    """Write ``<directory>/<chart>.png`` for every chart.

    Each file is written under a temporary name and renamed, so whoever attaches the charts to a mail never
    picks up a half-written PNG from an earlier run that is being replaced.
    """
    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, fig in figures(data, language).items():
        path = directory / f"{name}.png"
        partial = directory / f".{name}.png.partial"
        fig.savefig(partial, format="png", dpi=dpi, facecolor="white")
        os.replace(partial, path)
        paths[name] = path
    return paths


def _text(language: str, key: str) -> str:
    return TEXTS[language][key]


def _decorate(ax: Axes, language: str, title: str, xlabel: str, ylabel: str | None) -> None:
    ax.set_title(_text(language, title), fontsize=TITLE_SIZE, fontfamily=FONT, pad=10)
    ax.set_xlabel(_text(language, xlabel), fontsize=LABEL_SIZE, fontfamily=FONT)
    if ylabel is not None:
        ax.set_ylabel(_text(language, ylabel), fontsize=LABEL_SIZE, fontfamily=FONT)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_axisbelow(True)


def _no_data(ax: Axes, language: str) -> None:
    """Keep title and axis labels so the reader knows which chart is empty, and say why it is empty."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.text(0.5, 0.5, _text(language, "no_data"), transform=ax.transAxes, ha="center", va="center",
            fontsize=LABEL_SIZE + 2, fontfamily=FONT, color=NOTE_COLOUR)


def _month_label(month: str, language: str) -> str:
    """A reader scans "Oct 2025" / "Eki 2025" faster than "2025-10"; anything unexpected is shown as it is."""
    try:
        year, number = (int(part) for part in month.split("-"))
        return format_date(date(year, number, 1), "LLL y", locale=language)
    except ValueError:
        return month


def _month_axis(ax: Axes, months: Sequence[str], language: str) -> None:
    step = math.ceil(len(months) / MAX_MONTH_LABELS) if months else 1
    positions = list(range(0, len(months), step))
    labels = [_month_label(months[i], language) for i in positions]
    if len(positions) > ROTATE_AFTER:
        ax.set_xticks(positions, labels, rotation=45, ha="right", rotation_mode="anchor",
                      fontsize=TICK_SIZE, fontfamily=FONT)
    else:
        ax.set_xticks(positions, labels, fontsize=TICK_SIZE, fontfamily=FONT)
    ax.set_xlim(-0.6, len(months) - 0.4)


def _count_axis(ax: Axes, language: str, axis: Literal["x", "y"] = "y") -> None:
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(MaxNLocator(integer=True))
    target.set_major_formatter(FuncFormatter(lambda value, _pos: format_decimal(value, locale=language)))
    ax.grid(axis=axis, color=GRID_COLOUR, linewidth=0.8)


def _legend_outside(ax: Axes) -> None:
    """Right of the plot, so it never hides a bar or a point; the tight layout makes room for it."""
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False,
              prop={"family": FONT, "size": LEGEND_SIZE})


def _type_colour(kind: str, index: int) -> str:
    return TYPE_COLOURS.get(kind, OTHER_COLOURS[index % len(OTHER_COLOURS)])


def _type_label(kind: str, language: str) -> str:
    return TEXTS[language].get(f"type.{kind}", kind)


def _stacked(ax: Axes, segments: Sequence[tuple[str, str, Sequence[int]]], language: str) -> None:
    """Stacked bars, first segment at the bottom, with each stack's total above it."""
    count = len(segments[0][2])
    bottoms = [0] * count
    top: BarContainer | None = None
    for label, colour, values in segments:
        top = ax.bar(range(count), values, width=0.7, bottom=bottoms, color=colour, label=label, linewidth=0)
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    if top is not None:
        totals = [format_decimal(total, locale=language) if total else "" for total in bottoms]
        ax.bar_label(top, labels=totals, padding=2, fontsize=TICK_SIZE, fontfamily=FONT)
        ax.set_ylim(0, max(bottoms) * 1.1)  # room for the totals


def _monthly(ax: Axes, data: ReportData, language: str) -> None:
    _decorate(ax, language, "monthly.title", "month", "tickets")
    types = list(data.types) or list(DEFAULT_TYPES)
    counts = [[data.by_month_type.get(month, {}).get(kind, 0) for month in data.months] for kind in types]
    if not data.months or not any(any(row) for row in counts):
        _no_data(ax, language)
        return
    segments = [(_type_label(kind, language), _type_colour(kind, i), row)
                for i, (kind, row) in enumerate(zip(types, counts, strict=True))]
    _stacked(ax, segments, language)
    _month_axis(ax, data.months, language)
    _count_axis(ax, language)
    _legend_outside(ax)


def _category_label(name: str, language: str) -> str:
    if name in ("", "(none)"):
        return _text(language, "category.none")
    return name if len(name) <= CATEGORY_LABEL_CHARS else name[: CATEGORY_LABEL_CHARS - 1] + "…"


def _categories(ax: Axes, data: ReportData, language: str) -> None:
    _decorate(ax, language, "categories.title", "tickets", None)  # the category names say what the rows are
    top = [(name, count) for name, count in data.top_categories[:TOP_CATEGORIES] if count > 0]
    if not top:
        _no_data(ax, language)
        return
    positions = list(range(len(top)))
    counts = [count for _name, count in top]
    bars = ax.barh(positions, counts, height=0.7, color=CATEGORY_COLOUR, linewidth=0)
    ax.set_yticks(positions, [_category_label(name, language) for name, _count in top],
                  fontsize=TICK_SIZE, fontfamily=FONT)
    ax.invert_yaxis()  # the first (most frequent) at the top
    ax.bar_label(bars, labels=[format_decimal(c, locale=language) for c in counts], padding=3,
                 fontsize=TICK_SIZE, fontfamily=FONT)
    ax.set_xlim(0, max(counts) * 1.12)  # room for the value labels
    _count_axis(ax, language, axis="x")


def _percent(share: float | None) -> float:
    """NaN makes matplotlib break the line, which is how a month without measured deadlines should look."""
    return math.nan if share is None else share * 100


def _sla(ax: Axes, data: ReportData, language: str) -> None:
    _decorate(ax, language, "sla.title", "month", "met")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: format_percent(value / 100, locale=language)))
    first = [_percent(data.sla_by_month[m][0].met_share) if m in data.sla_by_month else math.nan
             for m in data.months]
    resolution = [_percent(data.sla_by_month[m][1].met_share) if m in data.sla_by_month else math.nan
                  for m in data.months]
    if all(math.isnan(v) for v in first + resolution):
        _no_data(ax, language)
        return
    x = list(range(len(data.months)))
    # clip_on=False: a month at 100 % would otherwise show half a marker on the top edge.
    ax.plot(x, first, marker="o", linewidth=2, color=FIRST_RESPONSE_COLOUR, label=_text(language, "first_response"),
            clip_on=False)
    ax.plot(x, resolution, marker="s", linewidth=2, color=RESOLUTION_COLOUR, label=_text(language, "resolution"),
            clip_on=False)
    target = format_percent(SLA_TARGET / 100, locale=language)
    ax.axhline(SLA_TARGET, color=TARGET_COLOUR, linestyle="--", linewidth=1.2,
               label=f"{_text(language, 'target')} ({target})")
    ax.set_ylim(0, 100)
    ax.set_yticks(range(0, 101, 20))
    ax.grid(axis="y", color=GRID_COLOUR, linewidth=0.8)
    _month_axis(ax, data.months, language)
    _legend_outside(ax)


def _satisfaction(ax: Axes, data: ReportData, language: str) -> None:
    _decorate(ax, language, "satisfaction.title", "month", "resolved")
    empty = SatisfactionFigures()
    figures_by_month = [data.satisfaction_by_month.get(month, empty) for month in data.months]
    rows = {
        "satisfied": [f.satisfied for f in figures_by_month],
        "not_satisfied": [f.not_satisfied for f in figures_by_month],
        "no_answer": [f.no_answer for f in figures_by_month],
    }
    if not data.months or not any(any(row) for row in rows.values()):
        _no_data(ax, language)
        return
    segments = [(_text(language, key), SATISFACTION_COLOURS[key], row) for key, row in rows.items()]
    _stacked(ax, segments, language)
    _month_axis(ax, data.months, language)
    _count_axis(ax, language)
    _legend_outside(ax)
