"""Server-rendered SVG bar charts for the supervisors' view (no JavaScript, no chart library).

Every label is escaped: agent names come from the PBX.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

COLORS = ("#b45309", "#1d4ed8", "#b91c1c", "#6b7280", "#047857")


def bar_chart(
    title: str,
    groups: Sequence[str],
    series: Mapping[str, Sequence[int]],
    *,
    chart_id: str,
    width: int = 760,
    height: int = 220,
) -> Markup:
    """Grouped vertical bars: one group per label in ``groups``, one bar per series in it.

    Each bar carries ``data-series``, ``data-group`` and ``data-value`` (what tests and
    assistive tools read), and a ``<title>`` tooltip.
    """
    left, bottom, top = 32, 36, 28
    plot_w, plot_h = width - left - 8, height - bottom - top
    peak = max([1, *(v for values in series.values() for v in values)])
    slot = plot_w / max(1, len(groups))
    bar_w = min(18.0, max(1.0, (slot - 4) / max(1, len(series))))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="{escape(chart_id)}" class="chart" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}" stroke="#999"/>',
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end" font-size="10">{peak}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" font-size="10">0</text>',
    ]
    for index, (name, values) in enumerate(series.items()):
        color = COLORS[index % len(COLORS)]
        parts.append(
            f'<rect x="{left + index * 110}" y="6" width="10" height="10" fill="{color}"/>'
            f'<text x="{left + index * 110 + 14}" y="15" font-size="11">{escape(name)}</text>'
        )
        for g, (group, value) in enumerate(zip(groups, values, strict=True)):
            h = plot_h * value / peak
            x = left + g * slot + (slot - bar_w * len(series)) / 2 + index * bar_w
            parts.append(
                f'<rect class="bar" data-series="{escape(name)}" data-group="{escape(group)}" data-value="{value}" '
                f'x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{color}">'
                f"<title>{escape(group)}: {escape(name)} {value}</title></rect>"
            )
    step = max(1, len(groups) // 14)
    for g, group in enumerate(groups):
        if g % step == 0:
            x = left + g * slot + slot / 2
            parts.append(
                f'<text x="{x:.1f}" y="{top + plot_h + 14}" text-anchor="middle" font-size="10">{escape(group)}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every interpolated text is escaped above)
