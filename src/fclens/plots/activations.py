"""Figures of internal activations on single samples: every stage's channel maps as one mosaic
per stage, marked channel sets framed, and a per-model overview."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.patches import Patch, Rectangle

from fclens.plots.base import _save, plt

MARK_COLORS = ("#00e5ff", "#ffd400", "#ff3dd5")  # per marked set, in order: cyan, yellow, pink
COLS = 8  # tiles per mosaic row
TILE = 0.46  # inches per tile


def mosaic(tiles: np.ndarray, cols: int = COLS, pad: int = 1) -> np.ndarray:
    """tiles (k, h, w) -> one (rows (h + pad), cols (w + pad)) image, NaN between tiles."""
    k, h, w = tiles.shape
    cols = max(1, min(cols, k))
    rows = -(-k // cols)
    out = np.full((rows * (h + pad), cols * (w + pad)), np.nan, np.float32)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        out[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = t
    return out


def _show_mosaic(ax, tiles: np.ndarray, channels: np.ndarray, marks: dict[str, np.ndarray],
                 cols: int = COLS, numbers: bool = True) -> None:
    """One stage grid on `ax`: a shared colour scale (diverging if the maps go negative), each
    tile's channel index, and a frame per marked set a channel belongs to."""
    k, h, w = tiles.shape
    m = mosaic(tiles, cols)
    lo, hi = np.nanmin(m), np.nanpercentile(np.abs(m), 99.5) or 1.0
    cmap = plt.get_cmap("RdBu_r" if lo < 0 else "magma").copy()
    cmap.set_bad("white")
    ax.imshow(m, cmap=cmap, vmin=-hi if lo < 0 else 0, vmax=hi, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    cols = max(1, min(cols, k))
    for i, ch in enumerate(channels):
        r, c = divmod(i, cols)
        x0, y0 = c * (w + 1) - 0.5, r * (h + 1) - 0.5
        if numbers:
            ax.text(x0 + 0.4, y0 + 0.4, str(int(ch)), fontsize=5, color="white", ha="left",
                    va="top", bbox=dict(boxstyle="square,pad=0.05", fc="black", ec="none",
                                        alpha=0.55))
        for j, (idx, color) in enumerate(zip(marks.values(), MARK_COLORS)):
            if ch in idx:
                inset = 0.12 * j * min(h, w)
                ax.add_patch(Rectangle((x0 + inset, y0 + inset), w - 2 * inset, h - 2 * inset,
                                       fill=False, ec=color, lw=1.4 - 0.3 * j))


def _legend(fig, marks: dict[str, np.ndarray], shown: np.ndarray | None = None) -> None:
    """A frame per marked set; with `shown`, how many of the set's channels the grid holds."""
    handles = [Patch(fc="none", ec=color, lw=1.4, label=name if shown is None else
                     f"{name} ({np.isin(idx, shown).sum()} of {len(idx)} shown)")
               for (name, idx), color in zip(marks.items(), MARK_COLORS)]
    if handles:
        fig.legend(handles=handles, loc="lower right", fontsize=6, ncol=len(handles),
                   frameon=False)


def plot_stage_grids(image: np.ndarray, label: str, names: list[str], tiles: list[np.ndarray],
                     channels: list[np.ndarray], subtitles: list[str],
                     marks: dict[str, np.ndarray], title: str, path: str | Path) -> None:
    """One image's activations: the image, then per stage s its tiles[s] (k, h, w) of
    channels[s] (k,) as a mosaic; channels of the last stage in marks[set] (indices) framed."""
    n_rows = max(-(-len(t) // COLS) for t in tiles)
    widths = [1.6] + [COLS * TILE] * len(tiles)
    fig, axes = plt.subplots(1, len(tiles) + 1, figsize=(sum(widths), TILE * n_rows + 1.1),
                             gridspec_kw=dict(width_ratios=widths), squeeze=False)
    axes = axes[0]
    axes[0].imshow(image, interpolation="nearest")
    axes[0].set_title(label, fontsize=6)
    axes[0].axis("off")
    for s, (ax, name) in enumerate(zip(axes[1:], names)):
        last = s == len(names) - 1
        _show_mosaic(ax, tiles[s], channels[s], marks if last else {})
        ax.set_title(f"{name}: {subtitles[s]}", fontsize=6)
    _legend(fig, marks, channels[-1])
    fig.suptitle(title, fontsize=7)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    _save(fig, path, palette=True)


def plot_overview(images: np.ndarray, labels: list[str], names: list[str],
                  mean_maps: list[np.ndarray], marked_tiles: list[np.ndarray],
                  marked_channels: list[np.ndarray], marks: list[dict[str, np.ndarray]],
                  title: str, path: str | Path, n_marked: int = 8) -> None:
    """One row per image: the image, the mean over channels of each stage (mean_maps[s]
    (N, h, w)), then its first n_marked marked last-stage channels (marked_tiles[i] (k, h, w)
    of marked_channels[i] (k,), framed by marks[i])."""
    n = len(images)
    widths = [1.0] * (1 + len(names)) + [0.4 * n_marked]
    fig, axes = plt.subplots(n, len(widths), figsize=(sum(widths) + 1.6, 0.95 * n + 0.7),
                             gridspec_kw=dict(width_ratios=widths), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(images[i], interpolation="nearest")
        axes[i, 0].set_ylabel(labels[i], fontsize=5.5, rotation=0, ha="right", va="center")
        for s in range(len(names)):
            axes[i, s + 1].imshow(mean_maps[s][i], cmap="magma", interpolation="nearest")
        k = min(n_marked, len(marked_channels[i]))
        if k:
            _show_mosaic(axes[i, -1], marked_tiles[i][:k], marked_channels[i][:k], marks[i],
                         cols=n_marked)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    for j, t in enumerate(["image", *[f"{s}: mean" for s in names],
                           f"{names[-1]}: marked channels"]):
        axes[0, j].set_title(t, fontsize=6)
    _legend(fig, marks[0] if marks else {})
    fig.suptitle(title, fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    _save(fig, path, palette=True)


def file_stems(names: list[str]) -> list[str]:
    """Names -> distinct file stems of [A-Za-z0-9_.-] ('_' for anything else; '_2', '_3' on
    collisions)."""
    import re

    out: list[str] = []
    for name in names:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "image"
        base, n = stem, 1
        while stem in out:
            n += 1
            stem = f"{base}_{n}"
        out.append(stem)
    return out


def plot_activation_pages(images: np.ndarray, labels: list[str], stems: list[str],
                          names: list[str], maps: list[np.ndarray],
                          channels: list[list[np.ndarray]], marks: list[dict[str, np.ndarray]],
                          numbers: list[dict[str, dict]], model: str, out: str | Path) -> None:
    """out/<stem>.png per image (every stage's grid) and out/overview.png. maps[s] (N, C, h, w)
    per stage; channels[i][s] the channels shown of image i at stage s; marks[i] its marked
    last-stage sets; numbers[i][set] their shares (fclens.explain.activations.set_numbers)."""
    out = Path(out)
    captions = [", ".join(
        f"{k} ({r['size']} ch) {r['activation_share']:.1%} of pooled activation (random "
        f"{r['activation_share_random']:.1%}), {r['logit_share']:.1%} of logit+ (random "
        f"{r['logit_share_random']:.1%})" for k, r in num.items()) for num in numbers]
    short = [f"{label}\n" + "\n".join(
        f"{k}: {r['activation_share']:.1%} act (rand {r['activation_share_random']:.1%})"
        for k, r in num.items()) for label, num in zip(labels, numbers)]
    for i, stem in enumerate(stems):
        tiles = [m[i, channels[i][s]] for s, m in enumerate(maps)]
        subtitles = [f"{m.shape[1]}x{m.shape[2]}x{m.shape[3]}, {(m[i] == 0).mean():.0%} zero, "
                     f"{len(channels[i][s])} shown" for s, m in enumerate(maps)]
        plot_stage_grids(images[i], labels[i], names, tiles, channels[i], subtitles, marks[i],
                         f"{model}: every stage on one image (last = pooled into the FC features; "
                         f"framed: the predicted class's sets)\n{captions[i]}", out / f"{stem}.png")
    marked = [np.asarray([c for c in channels[i][-1] if any(c in v for v in marks[i].values())],
                         np.int64) for i in range(len(stems))]
    plot_overview(images, short, names, [m.mean(1) for m in maps],
                  [maps[-1][i, marked[i]] for i in range(len(stems))], marked, marks,
                  f"{model}: mean channel map per stage; the predicted class's marked channels "
                  f"of {names[-1]}, their share of the pooled activation vs random sets",
                  out / "overview.png")
