"""Adversarial figures: accuracy against the radius (dense and sparse heads, the stronger
attack), and broken examples with the features that moved the margin most."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fclens.plots.base import _save, plt

N_BARS = 8  # terms shown per example
N_EXEMPLARS = 3  # training images of the most negative term's feature


def plot_curves(m: dict, title: str, path: str | Path) -> None:
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    eps = m["eps"]
    ax.plot(eps, m["acc"], "o-", color="k", label=f"dense head (clean {m['clean_acc']:.3f})")
    for name, h in m["sparse_heads"].items():
        ax.plot(eps, h["acc"], "s--", label=f"{name} head, NEC {h['nec']:.1f} "
                                            f"(clean {h['clean_acc']:.3f})")
    st = m["strong"]
    ax.plot([st["eps"]], [m["acc_strong"]], "r*", ms=11,
            label=f"PGD + FMN at {st['eps']:g}/255: {m['acc_strong']:.3f}")
    for e, a in zip(eps, m["acc"]):
        ax.annotate(f"{a:.3f}", (e, a), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log", base=2)
    ax.set_xticks(eps, [f"{e:g}" for e in eps])
    ax.set_xlabel("L-inf radius eps (units of 1/255)")
    ax.set_ylabel(f"accuracy ({m['n_images']} test images)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def plot_examples(ex: dict, names: tuple[str, ...], top_index: np.ndarray, train: np.ndarray,
                  title: str, path: str | Path) -> None:
    """Per example: clean, adversarial, the difference amplified, the most negative margin
    terms c_i (feature indices), and the top training images of the most negative one."""
    n = len(ex.get("y", []))
    cols = 4 + N_EXEMPLARS
    fig, axes = plt.subplots(max(n, 1), cols, figsize=(1.5 * cols + 1.5, 1.6 * max(n, 1)),
                             squeeze=False, gridspec_kw={"width_ratios": [1, 1, 1, 2.2]
                                                         + [1] * N_EXEMPLARS})
    for ax in axes.ravel():
        ax.axis("off")
    if n == 0:
        axes[0, 0].text(0, 0.5, "no broken image at this radius", fontsize=9)
    for r in range(n):
        clean, adv, c = ex["clean"][r], ex["adv"][r], ex["c"][r]
        diff = adv - clean
        amp = 0.5 / max(float(np.abs(diff).max()), 1e-12)
        y, t = int(ex["y"][r]), int(ex["t"][r])
        axes[r, 0].imshow(np.clip(clean, 0, 1))
        axes[r, 0].set_title(f"clean: {names[y][:12]}", fontsize=7)
        axes[r, 1].imshow(np.clip(adv, 0, 1))
        axes[r, 1].set_title(f"adv: {names[t][:12]}", fontsize=7)
        axes[r, 2].imshow(np.clip(0.5 + diff * amp, 0, 1))
        axes[r, 2].set_title(f"diff x{amp:.0f}", fontsize=7)
        order = np.argsort(c, kind="stable")[:N_BARS]
        ax = axes[r, 3]
        ax.axis("on")
        alg1 = ex["alg1"][r]  # the true class's Algorithm-1 features: dark
        ax.barh(range(len(order)), c[order],
                color=["darkred" if alg1[i] else "salmon" for i in order])
        ax.set_yticks(range(len(order)), [f"f{i}" for i in order], fontsize=6)
        ax.invert_yaxis()
        ax.tick_params(axis="x", labelsize=6)
        ax.set_title(f"margin change {c.sum():+.2f}, k90 = {int(ex['k90'][r])}", fontsize=7)
        for j, img in enumerate(np.asarray(top_index[order[0]])[:N_EXEMPLARS]):
            axes[r, 4 + j].imshow(train[int(img)])
            if j == 0:
                axes[r, 4 + j].set_title(f"f{order[0]}: top images", fontsize=7)
    fig.suptitle(title + "; bars: c_i = (W[y,i] - W[t,i])(h_i(adv) - h_i(x)), most negative "
                 "first, dark: the true class's Algorithm-1 features", fontsize=8)
    fig.tight_layout()
    _save(fig, path, palette=True)
