"""Server-rendered SVG charts (no JavaScript): the points waterfall and simple activity bars."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

_W = 470
_ROW = 26
_LABEL = 175


def _label_room(labels: Sequence[str]) -> float:
    """Room for the longest label at 14 px (a CJK character ~14 px, another ~7.6 px), 175-300 px: long
    English group names are not cut off at the chart's left edge."""
    widest = max((sum(14.0 if ord(c) > 0x2E80 else 7.6 for c in label) for label in labels), default=0.0)
    return max(float(_LABEL), min(300.0, widest + 14.0))


def waterfall(base: float, steps: Sequence[tuple[str, float]], score: float, title: str) -> str:
    """Horizontal waterfall: base points, then each reason group's points (green up, red down), then the
    score. The bars add up: base + Σ steps = score (the page asserts nothing; the model guarantees it)."""
    rows: list[tuple[str, float, float, str]] = [("base", 0.0, base, "#3b5b8c")]
    level = base
    for label, points in steps:
        rows.append((label, level, level + points, "#1d7a46" if points >= 0 else "#b3261e"))
        level += points
    rows.append(("score", 0.0, score, "#24324a"))
    values = [v for _, a, b, _ in rows for v in (a, b)]
    low, high = min(0.0, *values), max(values)
    span = (high - low) or 1.0
    room = _label_room([label for label, _ in steps] + ["Base points"])
    total = room + _W - _LABEL
    width = total - room - 70

    def x(v: float) -> float:
        return room + (v - low) / span * width

    height = _ROW * len(rows) + 10
    parts = [
        f'<svg class="chart" viewBox="0 0 {total:.0f} {height}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    for i, (label, a, b, colour) in enumerate(rows):
        y = 5 + i * _ROW
        left, right = sorted((x(a), x(b)))
        delta = b - a if label not in ("base", "score") else b
        text = f"{delta:+.1f}" if label not in ("base", "score") else f"{b:.1f}"
        parts.append(
            f'<text x="{room - 8:.0f}" y="{y + 17}" text-anchor="end" class="lbl" '
            f'data-label="{escape(label)}">{escape(label)}</text>'
            f'<rect x="{left:.1f}" y="{y + 4}" width="{max(right - left, 1.5):.1f}" height="{_ROW - 8}" '
            f'fill="{colour}" data-points="{delta:.4f}"/>'
            f'<text x="{right + 6:.1f}" y="{y + 17}" class="val">{text}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def bars(series: Sequence[tuple[str, float]], title: str, colour: str = "#3b5b8c") -> str:
    """Monthly bars with the month under every sixth bar: activity over time."""
    n = max(len(series), 1)
    height, bottom = 150, 125
    peak = max((v for _, v in series), default=0.0)
    top = peak or 1.0
    width = 340  # narrower than the waterfall: its labels stay legible in a third of a page or on a phone
    step = (width - 60) / n
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
        f'<text x="4" y="14" class="val">{peak:,.0f}</text>'
        f'<line x1="50" y1="{bottom}" x2="{width}" y2="{bottom}" stroke="#555"/>'
    ]
    for i, (month, value) in enumerate(series):
        h = value / top * (bottom - 20)
        xi = 55 + i * step
        parts.append(
            f'<rect x="{xi:.1f}" y="{bottom - h:.1f}" width="{max(step - 3, 1):.1f}" height="{h:.1f}" '
            f'fill="{colour}" data-month="{escape(month)}" data-value="{value:.2f}">'
            f"<title>{escape(month)}: {value:,.0f}</title></rect>"
        )
        if i % 6 == 0:
            parts.append(f'<text x="{xi:.1f}" y="{bottom + 16}" class="val">{escape(month)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def interval_bars(
    rows: Sequence[tuple[str, float | None, float | None, float | None]],
    title: str,
    *,
    limit: float | None = None,
    top: float = 1.0,
    colour: str = "#3b5b8c",
) -> str:
    """One bar per group with its 95% interval as a whisker, on a 0..`top` axis, and the flag rule's
    `limit` as a dashed line: a fairness metric by group. A group without a value gets no bar ("–")."""
    values = [v for _, v, lo, hi in rows for v in (v, lo, hi) if v is not None]
    top = max(top, *values, limit or 0.0) * 1.05 if values else top
    height = _ROW * len(rows) + 30
    room = _label_room([label for label, _, _, _ in rows])
    total = room + 230  # a narrow drawing: its text stays legible when a phone scales it down
    width = total - room - 60

    def x(v: float) -> float:
        return room + max(v, 0.0) / top * width

    parts = [
        f'<svg class="chart" viewBox="0 0 {total:.0f} {height}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
        f'<line x1="{room:.0f}" y1="2" x2="{room:.0f}" y2="{height - 24}" stroke="#555"/>'
        f'<text x="{room:.0f}" y="{height - 6}" class="val" text-anchor="middle">0</text>'
        f'<text x="{x(top / 1.05):.1f}" y="{height - 6}" class="val" text-anchor="middle">'
        f"{top / 1.05:.2f}</text>"
    ]
    if limit is not None:
        parts.append(
            f'<line x1="{x(limit):.1f}" y1="2" x2="{x(limit):.1f}" y2="{height - 24}" stroke="#8a5300" '
            f'stroke-dasharray="4 3" data-limit="{limit:.4f}"/>'
        )
    for i, (label, value, low, high) in enumerate(rows):
        y = 5 + i * _ROW
        parts.append(
            f'<text x="{room - 8:.0f}" y="{y + 17}" text-anchor="end" class="lbl">{escape(label)}</text>'
        )
        if value is None:
            parts.append(f'<text x="{room + 6:.0f}" y="{y + 17}" class="val">–</text>')
            continue
        parts.append(
            f'<rect x="{room:.0f}" y="{y + 5}" width="{max(x(value) - room, 1.5):.1f}" height="{_ROW - 10}" '
            f'fill="{colour}" data-value="{value:.4f}"/>'
        )
        end = x(value)
        if low is not None and high is not None:
            mid = y + _ROW / 2
            parts.append(
                f'<path d="M{x(low):.1f} {mid}H{x(high):.1f}M{x(low):.1f} {mid - 5}v10M{x(high):.1f} '
                f'{mid - 5}v10" stroke="#1b1b1b" stroke-width="1.5" fill="none" class="ci" '
                f'data-low="{low:.4f}" data-high="{high:.4f}"/>'
            )
            end = max(end, x(high))
        parts.append(f'<text x="{end + 6:.1f}" y="{y + 17}" class="val">{value:.2f}</text>')
    parts.append("</svg>")
    return "".join(parts)
