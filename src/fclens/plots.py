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
