"""Figures of images and maps: CAM grids, faithfulness curves, exemplars, activation
histograms."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fclens.core.constants import METHOD_TITLES
from fclens.plots.base import _save, plt


def plot_cam_grid(images: np.ndarray, maps: np.ndarray, row_labels: list[str],
                  col_labels: list[str], title: str, path: Path) -> None:
    """images (N, H, W, 3) uint8; maps (N, K, H, W) in [0, 1]: the image, then one overlay per
    map."""
    n, k = maps.shape[:2]
    fig, axes = plt.subplots(n, k + 1, figsize=(1.1 * (k + 1), 1.15 * n + 0.5), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(images[i], interpolation="nearest")
        axes[i, 0].set_ylabel(row_labels[i], fontsize=6, rotation=0, ha="right", va="center")
        for j in range(k):
            axes[i, j + 1].imshow(images[i], interpolation="nearest")
            axes[i, j + 1].imshow(maps[i, j], cmap="jet", alpha=0.5, vmin=0, vmax=1)
    for j, label in enumerate(["image", *col_labels]):
        axes[0, j].set_title(label, fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    _save(fig, path, palette=True)


def plot_cam_grids(images: np.ndarray, maps: dict[str, np.ndarray], row_labels: list[str],
                   col_labels: list[str], model: str, out: str | Path) -> None:
    """One `plot_cam_grid` per CAM method: out/<method>.png."""
    out = Path(out)
    for method, m in maps.items():
        plot_cam_grid(images, m, row_labels, col_labels, f"{model}: {METHOD_TITLES[method]} at "
                      f"the map feeding the pooling", out / f"{method}.png")


def plot_faithfulness_curves(fractions: np.ndarray,
                             curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str,
                             path: str | Path) -> None:
    """Mean deletion (left) and insertion (right) curves per target: class probability against
    the share of pixels perturbed in the map's order; curves maps target -> (deletion,
    insertion), each (S,). The random control is drawn dashed."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), sharey=True)
    for ax, which, name in ((axes[0], 0, "deletion (lower = faithful)"),
                            (axes[1], 1, "insertion (higher = faithful)")):
        for target, pair in curves.items():
            ax.plot(fractions, pair[which], "--" if target == "random" else "-", label=target)
        ax.set_xlabel("share of pixels perturbed (map order)")
        ax.set_title(name, fontsize=8)
    axes[0].set_ylabel("probability of the predicted class")
    axes[1].legend(fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def _class_blocks(cls: np.ndarray, max_cols: int = 3) -> tuple[int, int, np.ndarray, list]:
    """Grid cells for rows grouped by class: one column of rows per class, at most `max_cols`
    classes side by side, further classes below. -> (n_rows, n_cols, cell (G, 2), [(row, col,
    class)] of each block's first cell)."""
    classes = list(dict.fromkeys(cls.tolist()))
    height = max(int((cls == c).sum()) for c in classes)
    n_cols = min(max_cols, len(classes))
    cells, heads = np.zeros((len(cls), 2), np.int64), []
    for j, c in enumerate(classes):  # the few classes of a pictured group
        top, col = (j // n_cols) * height, j % n_cols
        rows = np.flatnonzero(cls == c)
        cells[rows] = np.stack([top + np.arange(len(rows)), np.full(len(rows), col)], 1)
        heads.append((top, col, c))
    return -(-len(classes) // n_cols) * height, n_cols, cells, heads


def plot_exemplars(thumbs: np.ndarray, cls: np.ndarray, labels: list[str],
                   class_names: list[str], title: str, path: str | Path) -> None:
    """thumbs (G, k, h, w, 3) uint8: per (class, feature) row its k exemplars side by side; the
    rows of a class in one column (at most three classes side by side)."""
    g, k, h, w, _ = thumbs.shape
    n_rows, n_cols, cells, heads = _class_blocks(cls)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(0.42 * k * n_cols + 1.5 * n_cols,
                                                      0.5 * n_rows + 0.9), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    pad = np.pad(thumbs, ((0, 0), (0, 0), (0, 0), (0, 1), (0, 0)), constant_values=255)
    strips = pad.transpose(0, 2, 1, 3, 4).reshape(g, h, k * (w + 1), 3)  # (G, h, k (w+1), 3)
    for i, (r, c) in enumerate(cells):
        ax = axes[r, c]
        ax.axis("on")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.imshow(strips[i], interpolation="nearest")
        ax.set_ylabel(labels[i], fontsize=5.5, rotation=0, ha="right", va="center")
    for r, c, cl in heads:
        axes[r, c].set_title(class_names[cl], fontsize=8)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    _save(fig, path, palette=True)


def _display_bins(counts: np.ndarray, r: float, max_bins: int = 40
                  ) -> tuple[np.ndarray, np.ndarray]:
    """counts (2, nb) over [-r, r) -> (counts (2, m), edges (m + 1,)): cropped to the occupied
    bins and merged to at most `max_bins`, for display only."""
    nb = counts.shape[1]
    occ = np.flatnonzero(counts.sum(0))
    lo, hi = (occ[0], occ[-1] + 1) if len(occ) else (nb // 2, nb // 2 + 1)
    f = -(-(hi - lo) // max_bins)  # bins merged into one
    m = -(-(hi - lo) // f)
    part = np.zeros((2, m * f), counts.dtype)
    part[:, :hi - lo] = counts[:, lo:hi]
    r = r or 1.0  # every value 0: one bin at 0
    return part.reshape(2, m, f).sum(2), -r + 2 * r / nb * (lo + f * np.arange(m + 1))


def plot_activation_hists(hist: np.ndarray, hist_r: np.ndarray, cls: np.ndarray,
                          labels: list[str], class_names: list[str], title: str,
                          path: str | Path) -> None:
    """hist (G, 2, nb) counts [class, other classes] over [-r, r) (hist_r (G,)): per (class,
    feature) the activation distribution on the class's images against the other classes',
    each as a share of its images; laid out like `plot_exemplars`."""
    n_rows, n_cols, cells, heads = _class_blocks(cls)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.3 * n_cols, 1.05 * n_rows + 0.9),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, (r, c) in enumerate(cells):
        ax = axes[r, c]
        ax.axis("on")
        counts, edges = _display_bins(hist[i], float(hist_r[i]))
        share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        ax.stairs(share[0], edges, fill=True, alpha=0.5, color="C3", label="this class")
        ax.stairs(share[1], edges, color="0.3", label="other classes")
        ax.set_title(labels[i].replace("\n", ", "), fontsize=6)
        ax.tick_params(labelsize=5)
    for r, c, cl in heads:
        axes[r, c].set_title(f"{class_names[cl]}: {axes[r, c].get_title()}", fontsize=6)
    axes[heads[0][0], heads[0][1]].legend(fontsize=5)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    _save(fig, path)
