"""Figures from arrays (matplotlib Agg). Each function writes one PNG atomically."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from .ald import ald_logpdf  # noqa: E402
from .constants import METHOD_TITLES  # noqa: E402
from .io import atomic_path  # noqa: E402


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


def plot_ald_classes(w: np.ndarray, res: dict, names: list[str], classes: list[int],
                     path: Path) -> None:
    """Per class: histogram with fitted ALD / Gaussian / Laplace densities, and an ALD QQ plot."""
    classes = classes or [0]
    fig, axes = plt.subplots(len(classes), 2, figsize=(9, 3 * len(classes)), squeeze=False)
    for row, c in zip(axes, classes):
        x = np.sort(w[c])
        ald = res["ald_fit"]
        grid = np.linspace(x[0], x[-1], 400)
        row[0].hist(x, bins=50, density=True, color="0.8")
        if np.isfinite(ald["loglik"][c]):
            dens = np.exp(ald_logpdf(grid, ald["loc"][c], ald["scale"][c], ald["kappa"][c]))
            row[0].plot(grid, dens, label=f"ALD κ={ald['kappa'][c]:.2f}")
            g, lp = res["gaussian"], res["laplace"]
            row[0].plot(grid, stats.norm.pdf(grid, g["loc"][c], g["scale"][c]),
                        label="Gaussian")
            row[0].plot(grid, stats.laplace.pdf(grid, lp["loc"][c], lp["scale"][c]),
                        label="Laplace")
            q = (np.arange(1, len(x) + 1) - 0.5) / len(x)
            k = ald["kappa"][c]
            if 0 < k < np.inf:
                theo = stats.laplace_asymmetric.ppf(q, k, ald["loc"][c], ald["scale"][c])
            else:  # boundary fit: a shifted exponential
                sign = 1 if k == 0 else -1
                ppf = stats.expon.ppf(q if sign > 0 else 1 - q)
                theo = ald["loc"][c] + sign * ppf * ald["scale"][c]
                theo = np.sort(theo)
            row[1].plot(theo, x, ".", ms=2)
            row[1].plot([x[0], x[-1]], [x[0], x[-1]], "k--", lw=0.8)
        row[0].set_title(f"class {c} ({names[c][:20]}): weights")
        row[0].legend(fontsize=7)
        row[1].set_title("QQ vs fitted ALD")
        row[1].set_xlabel("ALD quantile")
        row[1].set_ylabel("weight")
    fig.tight_layout()
    _save(fig, path)


def plot_kappa_hist(kappa: np.ndarray, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 3))
    k = kappa[np.isfinite(kappa) & (kappa > 0)]
    ax.hist(np.log(k), bins=30, color="C0")
    ax.axvline(0, color="k", ls="--", lw=0.8)
    ax.set_xlabel("log κ (0 = symmetric Laplace)")
    ax.set_ylabel("classes")
    ax.set_title(f"ALD asymmetry over {len(kappa)} classes ({len(kappa) - len(k)} boundary)")
    fig.tight_layout()
    _save(fig, path)


def plot_sorted_by_branch(w: np.ndarray, trees, names: list[str], classes: list[int],
                          path: Path) -> None:
    classes = [c for c in classes if c < len(trees)] or [0]
    fig, axes = plt.subplots(1, len(classes), figsize=(4 * len(classes), 3), squeeze=False)
    for ax, c in zip(axes[0], classes):
        depth = np.zeros(w.shape[1])
        sign = np.zeros(w.shape[1])
        for n in trees[c]:
            if n.chain_sign:  # on a chain: record how deep each index goes
                depth[n.indices] = n.depth
                sign[n.indices] = 1 if n.chain_sign == "+" else -1
        order = np.argsort(w[c])
        sc = ax.scatter(np.arange(len(order)), w[c][order], c=(sign * depth)[order],
                        cmap="coolwarm", s=4)
        ax.set_title(f"class {c} ({names[c][:20]})")
        ax.set_xlabel("rank")
        fig.colorbar(sc, ax=ax, label="± chain depth")
    axes[0][0].set_ylabel("sorted weight")
    fig.tight_layout()
    _save(fig, path)


def plot_depth(depths: list[int], rel_acc: list[float], damage: list[float],
               damage_non: list[float], path: str | Path) -> None:
    fig, ax = plt.subplots(1, 2, figsize=(8, 3))
    ax[0].plot(depths, rel_acc, "o-")
    ax[0].set_xlabel("ResNet depth")
    ax[0].set_ylabel("relative accuracy (decomposed / original)")
    ax[1].plot(depths, damage, "o-", label="influential noised")
    ax[1].plot(depths, damage_non, "s-", label="non-influential noised")
    ax[1].set_xlabel("ResNet depth")
    ax[1].set_ylabel("accuracy drop")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def plot_ald(w: np.ndarray, res: dict, names: list[str], classes: list[int], out: str | Path
             ) -> None:
    """out/classes.png (per-class fits) and out/kappa.png (the ALD asymmetry histogram)."""
    plot_ald_classes(w, res, names, classes, Path(out) / "classes.png")
    plot_kappa_hist(res["ald_fit"]["kappa"], Path(out) / "kappa.png")


def plot_k_grid(acc: np.ndarray, k1s: list[int], k2s: list[int], acc0: float, path: str | Path
                ) -> None:
    plot_heatmap(acc, k2s, k1s, f"decomposed test accuracy (rows k1, cols k2; full {acc0:.3f})",
                 Path(path))


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


def plot_fc_matrix(w: np.ndarray, class_order: np.ndarray, tree_order: np.ndarray,
                   names: list[str], path: Path) -> None:
    """Left: W with clustered classes, columns by mean split-tree rank over classes.
    Right: each class's row in its own split-tree order ('+' chain first)."""
    lim = float(np.quantile(np.abs(w), 0.99)) or 1.0
    global_cols = np.argsort(np.argsort(tree_order, axis=1).mean(0), kind="stable")
    panels = [(w[class_order][:, global_cols], "columns: mean split-tree rank"),
              (np.take_along_axis(w, tree_order, 1)[class_order], "each row in its own tree order")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4 if len(w) <= 20 else 6))
    for ax, (m, t) in zip(axes, panels):
        im = ax.imshow(m, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim,
                       interpolation="nearest")
        ax.set_title(t, fontsize=8)
        ax.set_xlabel("penultimate feature")
        if len(w) <= 20:
            ax.set_yticks(range(len(w)), [names[c][:14] for c in class_order], fontsize=6)
    axes[0].set_ylabel("class (clustered)")
    fig.colorbar(im, ax=axes, label="FC weight", shrink=0.8)
    _save(fig, path, palette=True)
