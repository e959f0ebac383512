"""Figures from arrays (matplotlib Agg). Each function writes one PNG atomically."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from .ald import ald_logpdf  # noqa: E402
from .io import atomic_path  # noqa: E402


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
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
            row[0].plot(grid, np.exp(ald_logpdf(grid, ald["loc"][c], ald["scale"][c],
                                                ald["kappa"][c])), label=f"ALD κ={ald['kappa'][c]:.2f}")
            g, lp = res["gaussian"], res["laplace"]
            row[0].plot(grid, stats.norm.pdf(grid, g["loc"][c], g["scale"][c]), label="Gaussian")
            row[0].plot(grid, stats.laplace.pdf(grid, lp["loc"][c], lp["scale"][c]), label="Laplace")
            q = (np.arange(1, len(x) + 1) - 0.5) / len(x)
            k = ald["kappa"][c]
            if 0 < k < np.inf:
                theo = stats.laplace_asymmetric.ppf(q, k, ald["loc"][c], ald["scale"][c])
            else:  # boundary fit: a shifted exponential
                sign = 1 if k == 0 else -1
                theo = ald["loc"][c] + sign * stats.expon.ppf(q if sign > 0 else 1 - q) * ald["scale"][c]
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
            if n.path and len(set(n.path)) == 1:  # on a chain: record how deep each index goes
                depth[n.indices] = n.depth
                sign[n.indices] = 1 if n.path[0] == "+" else -1
        order = np.argsort(w[c])
        sc = ax.scatter(np.arange(len(order)), w[c][order], c=(sign * depth)[order], cmap="coolwarm",
                        s=4)
        ax.set_title(f"class {c} ({names[c][:20]})")
        ax.set_xlabel("rank")
        fig.colorbar(sc, ax=ax, label="± chain depth")
    axes[0][0].set_ylabel("sorted weight")
    fig.tight_layout()
    _save(fig, path)


def plot_depth(depths: list[int], rel_acc: list[float], damage: list[float], damage_non: list[float],
               path: Path) -> None:
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
