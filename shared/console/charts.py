"""Charts drawn on the server as inline SVG: no script, no library, nothing from another host.
Each bar is labelled with its value and a target is drawn as a line across (or a tick on) it;
each chart has a <title> and an aria-label, and the page puts its exact figures beneath it."""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 720
LABEL_WIDTH = 200  # the names left of horizontal bars
VALUE_WIDTH = 70  # the value right of them
ROW_HEIGHT = 26
BAR_HEIGHT = 16
COLUMNS_HEIGHT = 220
LONGEST_LABEL = 24  # characters of a name shown beside a bar (all of it in the bar's <title>)


def percent(value: float | None) -> str:
    """A rate as a chart's label: `75%`, `66.7%`; `—` when there is none."""
    if value is None:
        return "—"
    shown = f"{value * 100:.1f}".removesuffix(".0")
    return f"{shown}%"


def exact_percent(value: float | None) -> str:
    """A rate as the numbers table gives it: the report's four decimals, as a percentage."""
    return "—" if value is None else f"{value * 100:.2f}%"


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None  # None: nothing to show (no decided limit)
    target: float | None = None
    shown: str = ""  # the value's label; by default a percentage (or the count)


def _short(label: str) -> str:
    return label if len(label) <= LONGEST_LABEL else label[: LONGEST_LABEL - 1] + "…"


def _open(chart_id: str, title: str, height: int, kind: str) -> str:
    name = escape(title)
    return (
        f'<svg class="chart {kind}" id="{escape(chart_id)}" role="img" '
        f'aria-label="{name}" aria-labelledby="{escape(chart_id)}-title" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
        f'preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{escape(chart_id)}-title">{name}</title>'
    )


def bars(chart_id: str, title: str, rows: list[Bar], *, rates: bool = True) -> Markup:
    """Horizontal bars, one a row: a rate (0 to 100%, the target a tick across its bar, the bar
    marked `below` when under it) or a count (scaled to the largest)."""
    height = max(len(rows), 1) * ROW_HEIGHT + 24
    plot = WIDTH - LABEL_WIDTH - VALUE_WIDTH
    top = 1.0 if rates else max([row.value or 0 for row in rows] + [1])
    parts = [_open(chart_id, title, height, "bars")]
    axis_y = len(rows) * ROW_HEIGHT + 4
    for tick in (0.0, 0.5, 1.0):
        x = LABEL_WIDTH + tick * plot
        label = percent(tick) if rates else f"{tick * top:g}"
        parts.append(
            f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{axis_y}"/>'
            f'<text class="axis" x="{x:.1f}" y="{axis_y + 14}" text-anchor="middle">{label}</text>'
        )
    for i, row in enumerate(rows):
        y = i * ROW_HEIGHT + (ROW_HEIGHT - BAR_HEIGHT) / 2
        middle = y + BAR_HEIGHT / 2 + 4
        shown = row.shown or (
            percent(row.value) if rates else ("—" if row.value is None else f"{row.value:g}")
        )
        below = rates and None not in (row.value, row.target) and row.value < row.target  # type: ignore[operator]
        width = 0.0 if row.value is None else max(row.value / top, 0.0) * plot
        tip = f"{row.label}: {shown}" + (
            f" ({percent(row.target)} target)" if row.target is not None else ""
        )
        parts.append(
            f'<g class="row">'
            f'<text class="label" x="{LABEL_WIDTH - 6}" y="{middle:.1f}" text-anchor="end">'
            f"{escape(_short(row.label))}</text>"
            f'<rect class="bar{" below" if below else ""}" x="{LABEL_WIDTH}" y="{y:.1f}" '
            f'width="{width:.1f}" height="{BAR_HEIGHT}" data-value="{escape(row.value)}">'
            f"<title>{escape(tip)}</title></rect>"
        )
        if row.target is not None:
            x = LABEL_WIDTH + row.target * plot
            parts.append(
                f'<line class="target" x1="{x:.1f}" x2="{x:.1f}" y1="{y - 3:.1f}" '
                f'y2="{y + BAR_HEIGHT + 3:.1f}" data-target="{row.target}"/>'
            )
        parts.append(
            f'<text class="value" x="{LABEL_WIDTH + width + 6:.1f}" y="{middle:.1f}">'
            f"{escape(shown)}</text></g>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def columns(
    chart_id: str, title: str, rows: list[Bar], *, target: float | None, target_label: str
) -> Markup:
    """Rates as columns side by side (week by week), 0 to 100%, the target a dashed line
    across them all; a column without a figure shows `—`."""
    left, right, top_pad, bottom = 44, 16, 20, 36
    plot_w = WIDTH - left - right
    plot_h = COLUMNS_HEIGHT - top_pad - bottom
    step = plot_w / max(len(rows), 1)
    bar_w = step * 0.6
    base_y = top_pad + plot_h
    parts = [_open(chart_id, title, COLUMNS_HEIGHT, "columns")]
    for tick in (0.0, 0.5, 1.0):
        y = base_y - tick * plot_h
        parts.append(
            f'<line class="grid" x1="{left}" x2="{WIDTH - right}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">'
            f"{percent(tick)}</text>"
        )
    for i, row in enumerate(rows):
        x = left + i * step + (step - bar_w) / 2
        height = 0.0 if row.value is None else max(min(row.value, 1.0), 0.0) * plot_h
        below = None not in (row.value, target) and row.value < target  # type: ignore[operator]
        shown = row.shown or percent(row.value)
        parts.append(
            f'<g class="column">'
            f'<rect class="bar{" below" if below else ""}" x="{x:.1f}" '
            f'y="{base_y - height:.1f}" width="{bar_w:.1f}" height="{height:.1f}" '
            f'data-value="{escape(row.value)}"><title>{escape(row.label)}: {escape(shown)}</title>'
            f"</rect>"
            f'<text class="value" x="{x + bar_w / 2:.1f}" y="{base_y - height - 4:.1f}" '
            f'text-anchor="middle">{escape(shown)}</text>'
            f'<text class="axis" x="{x + bar_w / 2:.1f}" y="{base_y + 16}" '
            f'text-anchor="middle">{escape(row.label)}</text></g>'
        )
    if target is not None:
        y = base_y - target * plot_h
        parts.append(
            f'<line class="target" x1="{left}" x2="{WIDTH - right}" y1="{y:.1f}" y2="{y:.1f}" '
            f'data-target="{target}"/>'
            f'<text class="target-label" x="{WIDTH - right}" y="{y - 4:.1f}" text-anchor="end">'
            f"{escape(target_label)} {percent(target)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
