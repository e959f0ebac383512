"""Figures from arrays (matplotlib Agg): the atomic PNG writer and shared layouts."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fclens.core.io import atomic_path  # noqa: E402


def _save(fig, path: str | Path, palette: bool = False) -> None:
    """palette=True: 256-colour PNG, 3-4x smaller for photo-like figures kept in git."""
    with atomic_path(path) as tmp:
        if palette:
            import io

            from PIL import Image

            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=90)
            Image.open(buf).convert("RGB").quantize(256).save(tmp, format="PNG", optimize=True)
        else:
            fig.savefig(tmp, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)


def plot_heatmap(values: np.ndarray, xlabels, ylabels, title: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 4))
    im = ax.imshow(values, cmap="viridis")
    ax.set_xticks(range(len(xlabels)), xlabels)
    ax.set_yticks(range(len(ylabels)), ylabels)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=7, color="w")
    ax.set_title(title)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    _save(fig, path)


def plot_tiles(tiles: np.ndarray, title: str, path: Path, cols: int = 16) -> None:
    """tiles (N, h, w, 3) in [0, 1] as a grid."""
    n = len(tiles)
    cols = min(cols, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(0.6 * cols, 0.6 * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for t, ax in zip(tiles, axes.ravel()):
        ax.imshow(np.clip(t, 0, 1), interpolation="nearest")
    fig.suptitle(title, fontsize=8)
    _save(fig, path)
