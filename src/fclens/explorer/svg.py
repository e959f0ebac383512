"""Charts drawn in the page as inline SVG: a few kilobytes each, no image file, crisp at any
zoom. Each chart is a <svg role="img"> with a <title>, the text a screen reader speaks."""

from __future__ import annotations

from html import escape

import numpy as np

W, H = 480, 220  # the drawing, in SVG units
L, R, T, B = 44, 8, 8, 30  # margins: axes labels left and below
N_COLORS = 7  # curve colours c0..c6, in assets/site.css


def _num(v: float) -> str:
    """A tick label, at most 6 characters: 0.0184, 9.09, 884, 8.84k."""
    return f"{v / 1e3:.3g}k" if abs(v) >= 1e3 else f"{v:.3g}"


def _frame(title: str, body: list[str], x: tuple[float, float] | None, y_max: float,
           x_label: str, y_label: str) -> str:
    """Axes, ticks (x: the axis range; None: no x ticks) and labels around `body`."""
    ax = (f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" class="ax"/>'
          f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" class="ax"/>')
    ticks = "".join(  # text anchors: the classes m (middle) and e (end), assets/site.css
        f'<text x="{L + (W - L - R) * f:.0f}" y="{H - B + 13}" class="m">'
        f"{_num(x[0] + (x[1] - x[0]) * f)}</text>" for f in (0, 0.5, 1)) if x else ""
    ticks += (f'<text x="{L - 4}" y="{T + 9}" class="e">{_num(y_max)}</text>'
              f'<text x="{L - 4}" y="{H - B}" class="e">0</text>')
    mid = (T + H - B) // 2
    labels = (f'<text x="{(L + W - R) // 2}" y="{H - 3}" class="m">{escape(x_label)}</text>'
              f'<text x="10" y="{mid}" transform="rotate(-90 10 {mid})" class="m">'
              f"{escape(y_label)}</text>")
    return (f'<svg class="chart" role="img" viewBox="0 0 {W} {H}" width="{W}" height="{H}">'
            f"<title>{escape(title)}</title>{ax}{ticks}{labels}{''.join(body)}</svg>")


def _sx(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return L + (np.asarray(v, float) - lo) / (hi - lo) * (W - L - R)


def _sy(v: np.ndarray, top: float) -> np.ndarray:
    return (H - B) - np.clip(np.asarray(v, float), 0, top) / top * (H - B - T)


def _bars(edges: np.ndarray, heights: np.ndarray, lo: float, hi: float, top: float,
          cls: str = "bar") -> list[str]:
    """All bars as one <path> of rectangles (a few bytes each, not a <rect> per bar)."""
    x0, x1, y = _sx(edges[:-1], lo, hi), _sx(edges[1:], lo, hi), _sy(heights, top)
    d = "".join(f"M{a:.0f} {H - B}V{c:.0f}H{max(b - 1, a + 1):.0f}V{H - B}Z"
                for a, b, c in zip(x0, x1, y) if c < H - B - 0.5)
    return [f'<path class="{cls}" d="{d}"/>']


def density_chart(edges: np.ndarray, hist: np.ndarray, grid: np.ndarray,
                  curves: dict[str, np.ndarray], best: str | None, title: str,
                  x_label: str = "weight") -> str:
    """A density histogram (edges (B+1,), hist (B,)) with fitted densities (grid (G,), each
    curve (G,); NaN points are left out); the best family's curve is drawn thicker."""
    lo, hi = float(grid[0]), float(grid[-1])
    finite = [c[np.isfinite(c)] for c in curves.values()]
    top = max(float(hist.max()), max((float(c.max()) for c in finite if c.size), default=0))
    top = min(top, 1.6 * float(hist.max())) or 1.0  # a spiky fit cannot squash the histogram
    body = _bars(edges, hist, lo, hi, top)
    legend = []
    for i, (name, c) in enumerate(curves.items()):
        ok = np.isfinite(c)
        pts = " ".join(f"{a:.0f},{b:.0f}" for a, b in zip(_sx(grid[ok], lo, hi),
                                                            _sy(c[ok], top)))
        cls = f"c{i % N_COLORS}{' best' if name == best else ''}"  # colours: assets/site.css
        body.append(f'<polyline class="{cls}" points="{pts}"/>')
        tag = " (best AIC)" if name == best else ""
        legend.append(f'<text x="{W - R - 4}" y="{T + 12 + 12 * i}" class="e {cls}">'
                      f"{escape(name)}{tag}</text>")
    return _frame(title, body + legend, (lo, hi), top, x_label, "density")


def hist_chart(counts: np.ndarray, r: float, title: str, x_label: str = "activation") -> str:
    """The exemplars scan's histogram (counts (2n,) over [-r, r)), drawn over the range that
    holds values: [0, r) for post-ReLU features, rebinned to at most 32 bars."""
    n = len(counts) // 2
    lo_half = counts[:n].sum() > 0
    part = counts if lo_half else counts[n:]
    lo = -r if lo_half else 0.0
    group = max(1, len(part) // 32)
    bars = part.reshape(-1, group).sum(1).astype(float)  # (<= 32,)
    edges = np.linspace(lo, r if r > 0 else 1.0, len(bars) + 1)
    top = float(bars.max()) or 1.0
    return _frame(title, _bars(edges, bars, float(edges[0]), float(edges[-1]), top),
                  (float(edges[0]), float(edges[-1])), top, x_label, "images")


def bar_chart(values: np.ndarray, labels: list[str], title: str, y_label: str,
              mark: int | None = None) -> str:
    """Vertical bars (K,) >= 0 with a label under each; bar `mark` highlighted."""
    k = len(values)
    top = float(np.max(values)) if k and np.max(values) > 0 else 1.0
    edges = np.arange(k + 1, dtype=float)
    v = np.asarray(values, float)
    body = _bars(edges, v, 0, k, top)
    if mark is not None:  # the marked bar drawn again on top, in its own colour
        one = np.where(np.arange(k) == mark, v, 0.0)
        body += _bars(edges, one, 0, k, top, "bar mark")
    step = max(1, k // 12)
    body += [f'<text x="{_sx(i + 0.5, 0, k):.0f}" y="{H - B + 12}" class="m small">'
             f"{escape(labels[i][:10])}</text>" for i in range(0, k, step)]
    return _frame(title, body, None, top, "", y_label)
