"""Figures of FC weights: per-class histograms with fitted densities, kappa, split trees,
the FC matrix, banding by depth."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fclens.plots.base import _save, plt

_LABELS = {"gaussian": "Gaussian", "laplace": "Laplace", "student_t": "Student-t",
           "logistic": "logistic"}


def plot_ald_classes(curves: dict, names: list[str], path: Path) -> None:
    """Per class: histogram with the fitted densities, and a QQ plot against the fitted ALD.

    curves: `analysis.ald.class_curves`'s arrays (sorted weights, density grid, each family's
    fitted density, ALD quantiles): the figure draws them and computes no fit.
    """
    classes = curves["classes"]
    fig, axes = plt.subplots(len(classes), 2, figsize=(9, 3 * len(classes)), squeeze=False)
    for i, (row, c) in enumerate(zip(axes, classes)):
        x, grid = curves["x"][i], curves["grid"][i]
        row[0].hist(x, bins=50, density=True, color="0.8")
        if curves["fitted"][i]:
            for fam, dens in curves["density"].items():
                label = f"ALD κ={curves['kappa'][i]:.2f}" if fam == "ald" else _LABELS.get(fam, fam)
                row[0].plot(grid, dens[i], label=label)
            row[1].plot(curves["qq"][i], x, ".", ms=2)
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


def plot_ald(curves: dict, kappa: np.ndarray, names: list[str], out: str | Path) -> None:
    """out/classes.png (per-class fits, from `analysis.ald.class_curves`) and out/kappa.png (the
    histogram of every class's ALD asymmetry kappa (C,))."""
    plot_ald_classes(curves, names, Path(out) / "classes.png")
    plot_kappa_hist(kappa, Path(out) / "kappa.png")


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


def plot_banding_by_depth(banding: dict, title: str, path: str | Path) -> None:
    """banding: `banding.model_banding`'s dict. Horizontal and vertical score of every spatial
    conv in depth order, with each layer's chance level; the last and the highest layer marked."""
    layers = sorted(banding["layers"].items(), key=lambda kv: kv[1]["index"])
    names = [n for n, _ in layers]
    x = np.arange(len(layers))
    h, v, ch, cv = (np.array([s[k] for _, s in layers], float)
                    for k in ("horizontal", "vertical", "chance", "chance_vertical"))
    fig, ax = plt.subplots(figsize=(max(5.0, min(12.0, 0.18 * len(x) + 3)), 3.2))
    ax.plot(x, h, "o-", ms=3, label="horizontal (row means)")
    ax.plot(x, v, "s-", ms=3, color="C1", alpha=0.7, label="vertical (column means)")
    ax.step(x, ch, "k--", lw=0.8, where="mid", label="chance (white noise)")
    if not np.allclose(ch, cv):  # non-square kernels: the vertical chance differs
        ax.step(x, cv, ":", color="C1", lw=0.8, where="mid", label="chance, vertical")
    best = names.index(banding["max_layer"])
    ax.annotate(f"max: {names[best]}", (best, h[best]), textcoords="offset points",
                xytext=(0, 6), ha="center", fontsize=6)
    ax.plot([best], [h[best]], "o", ms=7, mfc="none", color="C3")
    ax.set_xlabel("spatial conv, in depth order")
    ax.set_ylabel("share of kernel energy")
    ax.set_ylim(0, max(1e-3, np.nanmax(np.r_[h, v, ch])) * 1.15)
    ax.legend(fontsize=6, loc="lower left", ncol=4)  # below chance: the emptiest band
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    _save(fig, path)
