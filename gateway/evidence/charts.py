"""Charts for the evidence report, drawn on the server as inline SVG: no script, no external
asset, crisp on paper. Two kinds:

- ``bars``: one bar per day (availability %, or canary success %), red below a threshold,
  a grey hatched bar where there is no data;
- ``lines``: per-day series (latency p50 and p95), on a shared axis that starts at zero.

Every chart has a ``<title>`` and a text summary for screen readers. Values are escaped.
"""

from __future__ import annotations

from html import escape

W, H = 640, 180
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 14, 34
COLOURS = ("#1f5f8b", "#c0392b", "#7d3c98")


def _frame(title: str, body: str, summary: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" '
            f'class="chart" aria-label="{escape(title)}"><title>{escape(title)}</title>'
            f'<desc>{escape(summary)}</desc>{body}</svg>')


def _x_labels(days: list[str], step: float, x0: float) -> str:
    every = max(1, len(days) // 10)
    out = []
    for i, d in enumerate(days):
        if i % every == 0 or i == len(days) - 1:
            x = x0 + step * (i + 0.5)
            label = d[11:] if len(d) > 10 else d[5:]        # "07:00" per hour, "03-29" per day
            out.append(f'<text x="{x:.1f}" y="{H - 14}" font-size="10" '
                       f'text-anchor="middle">{escape(label)}</text>')
    return "".join(out)


def _y_axis(top: float, unit: str, ticks: int = 4) -> str:
    plot_h = H - TOP - BOTTOM
    out = []
    for i in range(ticks + 1):
        v = top * i / ticks
        y = H - BOTTOM - plot_h * i / ticks
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="#ddd" stroke-width="1"/>'
                   f'<text x="{LEFT - 4}" y="{y + 3:.1f}" font-size="10" '
                   f'text-anchor="end">{_num(v)}{escape(unit)}</text>')
    return "".join(out)


def _num(v: float) -> str:
    return f"{v:.0f}" if v == int(v) or abs(v) >= 100 else f"{v:.1f}"


def bars(title: str, days: list[str], values: list[float | None], *, unit: str = "%",
         top: float = 100.0, red_below: float = 99.0) -> str:
    """Per-day bars on 0..top."""
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    step = plot_w / max(1, len(days))
    parts = [_y_axis(top, unit)]
    for i, v in enumerate(values):
        x = LEFT + step * i + step * 0.15
        w = max(1.0, step * 0.7)
        if v is None:
            parts.append(f'<rect x="{x:.1f}" y="{TOP}" width="{w:.1f}" height="{plot_h}" '
                         f'fill="#f2f2f2" stroke="#ccc" stroke-dasharray="2,2"/>')
            continue
        h = plot_h * max(0.0, min(v, top)) / top
        colour = "#c0392b" if v < red_below else "#2e7d32"
        parts.append(f'<rect x="{x:.1f}" y="{H - BOTTOM - h:.1f}" width="{w:.1f}" '
                     f'height="{h:.1f}" fill="{colour}"><title>{escape(days[i])}: '
                     f'{v:.2f}{escape(unit)}</title></rect>')
    parts.append(_x_labels(days, step, LEFT))
    shown = [v for v in values if v is not None]
    summary = (f"{len(days)} days; lowest {min(shown):.2f}{unit}" if shown
               else f"{len(days)} days; no data")
    return _frame(title, "".join(parts), summary)


def lines(title: str, days: list[str], series: dict[str, list[float | None]], *,
          unit: str = "") -> str:
    """Per-day series (e.g. p50 and p95) on a shared axis from zero."""
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    step = plot_w / max(1, len(days))
    peak = max((v for vs in series.values() for v in vs if v is not None), default=0.0)
    top = _nice(peak)
    parts = [_y_axis(top, unit)]
    for n, (name, values) in enumerate(series.items()):
        colour = COLOURS[n % len(COLOURS)]
        points = [(LEFT + step * (i + 0.5), H - BOTTOM - plot_h * v / top)
                  for i, v in enumerate(values) if v is not None]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                         f'stroke-width="2"/>')
        for x, y in points:
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>')
        parts.append(f'<rect x="{LEFT + 8 + n * 90}" y="{TOP - 10}" width="10" height="4" '
                     f'fill="{colour}"/><text x="{LEFT + 22 + n * 90}" y="{TOP - 6}" '
                     f'font-size="10">{escape(name)}</text>')
    parts.append(_x_labels(days, step, LEFT))
    summary = f"{len(days)} days; highest {_num(peak)}{unit}" if peak else \
        f"{len(days)} days; no data"
    return _frame(title, "".join(parts), summary)


def _nice(peak: float) -> float:
    """A round axis top at or above ``peak``."""
    if peak <= 0:
        return 1.0
    magnitude = 10 ** len(str(int(peak))) / 10 if peak >= 1 else 0.1
    for m in (1, 2, 2.5, 5, 10):
        if peak <= m * magnitude:
            return m * magnitude
    return 10 * magnitude
