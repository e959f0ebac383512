"""Figures of the studies: depth, k grid, hyperplanes, sparse heads, global pruning."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fclens.plots.base import _save, plot_heatmap, plt


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


def plot_geometry_depth(depths: list[int], figures: dict[str, dict[str, list[float]]],
                        path: str | Path) -> None:
    """One panel per neural-collapse figure (nc1, ..., ncc_acc), train and test against depth."""
    titles = {"nc1": "NC1: Tr(Sw Sb+)/C", "nc2_cos_shift_means": "NC2: mean |cos + 1/(C-1)|",
              "nc3": "NC3: |W/|W| - M/|M||^2", "nc4": "NC4: FC vs nearest centre",
              "ncc_acc": "nearest-centre accuracy"}
    fig, axes = plt.subplots(1, len(figures), figsize=(2.6 * len(figures), 2.8), squeeze=False)
    for ax, (key, by_split) in zip(axes[0], figures.items()):
        for split, marker in (("train", "o-"), ("test", "s--")):
            ax.plot(depths, by_split[split], marker, label=split)
        ax.set_title(titles.get(key, key), fontsize=8)
        ax.set_xlabel("ResNet depth")
        ax.set_xticks(depths)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def plot_k_grid(acc: np.ndarray, k1s: list[int], k2s: list[int], acc0: float, path: str | Path
                ) -> None:
    plot_heatmap(acc, k2s, k1s, f"decomposed test accuracy (rows k1, cols k2; full {acc0:.3f})",
                 Path(path))


def plot_hyperplanes(x: np.ndarray, y: np.ndarray, snapshots: list, regions: np.ndarray,
                     extent: tuple[float, float, float, float], path: str | Path) -> None:
    """x (N, 2), y (N,) in {0, 1}; snapshots with .iteration, .w1 (H, 2), .b1 (H,), .train_acc;
    regions (S, G, G) predicted class on `extent` (row 0 at the bottom). One panel per snapshot:
    the decision regions, the data and every hidden unit's line {x : w.x + b = 0}."""
    cols = min(4, len(snapshots))
    rows = -(-len(snapshots) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.5 * rows + 0.3), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, s, reg in zip(axes.ravel(), snapshots, regions):
        ax.axis("on")
        ax.imshow(reg, origin="lower", extent=extent, cmap="coolwarm", alpha=0.18, vmin=0,
                  vmax=1, interpolation="nearest", aspect="auto")
        ax.scatter(*x[y == 0].T, s=3, color="C0")
        ax.scatter(*x[y == 1].T, s=3, color="C3")
        for w, b in zip(s.w1, s.b1):
            if np.hypot(*w) > 1e-12:  # a dead zero normal has no line
                p0 = -b * w / (w @ w)  # (2,) the line's point closest to the origin
                ax.axline(tuple(p0), tuple(p0 + [-w[1], w[0]]), color="k", lw=0.6, alpha=0.7)
        ax.set_xlim(extent[:2])
        ax.set_ylim(extent[2:])
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"iteration {s.iteration}: train acc {s.train_acc:.2f}", fontsize=7)
    fig.suptitle(f"2-{len(snapshots[0].b1)}-2 ReLU MLP on two moons: each line is a hidden "
                 f"unit's w·x + b = 0; background: the predicted class", fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def plot_sparsify(metrics: dict, title: str, path: str | Path) -> None:
    """`sparsify.run`'s metrics: test accuracy against the mean features kept per class (log x),
    one colour per method, solid without refit and dashed with it; random's band is +- 1 std
    over seeds; ALD's natural cuts as markers (filled: no refit, hollow: refit)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, v) in enumerate(sorted(metrics["methods"].items())):
        pts = [(n, a, r) for n, a, r in zip(v["nec"], v["acc"], v["acc_refit"]) if n is not None]
        if not pts:
            continue
        nec, acc, ref = (np.array(t, float) for t in zip(*pts))
        ax.plot(nec, acc, "-", marker=".", color=f"C{i}", label=name)
        ax.plot(nec, ref, "--", color=f"C{i}")
        if "acc_std" in v:
            for mean, std in ((acc, v["acc_std"]), (ref, v["acc_refit_std"])):
                std = np.array(std, float)
                ax.fill_between(nec, mean - std, mean + std, color=f"C{i}", alpha=0.15, lw=0)
    cuts = sorted((k, v) for k, v in metrics["ald_natural_cut"].items() if isinstance(v, dict))
    for marker, (name, cut) in zip("^v", cuts):
        if cut["mean_k"] > 0:  # a log axis has no 0
            ax.plot([cut["mean_k"]], [cut["acc"]], marker, color="k", ms=6,
                    label=f"ALD natural cut, {name.replace('_', '-')}")
            ax.plot([cut["mean_k"]], [cut["acc_refit"]], marker, color="k", ms=6, mfc="none")
    ax.axhline(metrics["dense_acc"], color="k", lw=0.8, ls=":", label="dense head")
    ax.plot([], [], "k-", label="no refit")
    ax.plot([], [], "k--", label="head refit")
    ax.set_xscale("log")
    ax.set_xlabel("features kept per class (mean)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=6, loc="lower right", ncol=2)
    fig.tight_layout()
    _save(fig, path)


def plot_global_pruning(metrics: dict, title: str, path: str | Path) -> None:
    """`sparsify.run`'s metrics: test accuracy against the share of all FC weights kept (log x),
    one colour per way of choosing them, solid without refit and dashed with it."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for i, (name, g) in enumerate(sorted(metrics["global"].items())):
        ax.plot(g["fraction"], g["acc"], "-o", ms=3, color=f"C{i}", label=name)
        ax.plot(g["fraction"], g["acc_refit"], "--", color=f"C{i}")
    ax.axhline(metrics["dense_acc"], color="k", lw=0.8, ls=":", label="dense head")
    ax.plot([], [], "k-", label="no refit")
    ax.plot([], [], "k--", label="head refit")
    ax.set_xscale("log")
    fractions = sorted({f for g in metrics["global"].values() for f in g["fraction"]})
    ax.set_xticks(fractions, [f"{f:.3g}" for f in fractions])
    ax.minorticks_off()
    ax.set_xlabel("share of FC weights kept")
    ax.set_ylabel("test accuracy")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    _save(fig, path)
