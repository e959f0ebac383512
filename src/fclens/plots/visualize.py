"""Maximum-response pictures: per objective, MACO beside Fourier for every class (with the
source model's probability), MACO's transparency, and each visualization beside its exemplars."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fclens.plots.base import _save, plt

_NAMES = {"maco": "MACO", "fourier": "Fourier"}


def _hwc(x: np.ndarray) -> np.ndarray:
    return np.clip(np.moveaxis(x, 0, -1), 0, 1)  # (3, H, W) -> (H, W, 3)


def _cell(ax, img: np.ndarray, label: str | None = None, title: str | None = None) -> None:
    ax.imshow(img, interpolation="nearest" if img.shape[0] <= 64 else "bilinear")
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    if label is not None:
        ax.set_xlabel(label, fontsize=7, labelpad=1)
    if title is not None:
        ax.set_title(title, fontsize=8)


def plot_objective(images: dict[str, np.ndarray], transparency: dict[str, np.ndarray | None],
                   probs: dict[str, np.ndarray], rows: list[str], title: str, path: Path) -> None:
    """images[method] (K, 3, H, W) in [0, 1], one row per class; transparency[method] (K, H, W)
    or None; probs[method] (K,). Columns: each method, then each transparency-weighted image."""
    cols = [(m, False) for m in images] + [(m, True) for m in images
                                           if transparency.get(m) is not None]
    k = len(rows)
    fig, axes = plt.subplots(k, len(cols), figsize=(1.45 * len(cols) + 1.2, 1.35 * k + 0.5),
                             squeeze=False)
    for i in range(k):
        for j, (m, alpha) in enumerate(cols):
            img = _hwc(images[m][i])
            if alpha:  # horama's plot_maco: the image over white, opacity = attribution
                a = transparency[m][i][..., None]
                img = img * a + (1 - a)
            _cell(axes[i, j], img, None if alpha else f"p={probs[m][i]:.2f}",
                  (f"{_NAMES.get(m, m)} transparency" if alpha else _NAMES.get(m, m))
                  if i == 0 else None)
        axes[i, 0].set_ylabel(rows[i], fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path, palette=True)


def plot_exemplars(blocks: list[tuple[str, dict[str, np.ndarray], np.ndarray]], rows: list[str],
                   title: str, path: Path) -> None:
    """blocks: (name, images[method] (K, 3, H, W), exemplars (K, n, h, w, 3) uint8): per block,
    the methods' visualizations of each class then its n exemplar images."""
    widths = [len(v) + e.shape[1] for _, v, e in blocks]
    n_cols = sum(widths) + len(blocks) - 1
    k = len(rows)
    fig, axes = plt.subplots(k, n_cols, figsize=(0.75 * n_cols + 1.2, 0.85 * k + 0.6),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    col = 0
    for name, vis, ex in blocks:
        for i in range(k):
            for j, (m, v) in enumerate(vis.items()):
                axes[i, col + j].axis("on")
                _cell(axes[i, col + j], _hwc(v[i]),
                      title=f"{_NAMES.get(m, m)}\n{name}" if i == 0 else None)
            for j in range(ex.shape[1]):
                axes[i, col + len(vis) + j].axis("on")
                _cell(axes[i, col + len(vis) + j], ex[i, j],
                      title="exemplars" if i == 0 and j == 0 else None)
        col += len(vis) + ex.shape[1] + 1
    for i in range(k):
        axes[i, 0].set_ylabel(rows[i], fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path, palette=True)
