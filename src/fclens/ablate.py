"""Feature ablations under the original FC head: replace index sets by noise, measure accuracy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .constants import NOISE_MODES
from .decompose import accuracy, decomposed_logits, index_mask, top_k_indices
from .errors import FclensError
from .tables import Features, Head, Influential


@dataclass(frozen=True)
class Noise:
    """How ablated entries are filled; mean/std (D,) are the training features' statistics."""

    mode: str
    mean: np.ndarray
    std: np.ndarray
    seed: int

    @classmethod
    def from_train(cls, mode: str, train: Features, seed: int) -> Noise:
        return cls(mode, train.x.mean(0), train.x.std(0), seed)


def replace(x: np.ndarray, mask: np.ndarray, noise: Noise, rng: np.random.Generator
            ) -> np.ndarray:
    """x (N, D) with the entries where mask (N, D) [or (D,)] is True replaced by noise.

    standard_normal: N(0, 1) as in the paper's code; feature_stats: N(mean_j, std_j) of the
    training features; zero; train_mean: mean_j (the 'mean ablation').
    """
    mask = np.broadcast_to(mask, x.shape)
    if noise.mode == "standard_normal":
        fill = rng.standard_normal(x.shape, dtype=np.float32)
    elif noise.mode == "feature_stats":
        fill = noise.mean + noise.std * rng.standard_normal(x.shape, dtype=np.float32)
    elif noise.mode == "zero":
        fill = np.zeros_like(x)
    elif noise.mode == "train_mean":
        fill = np.broadcast_to(noise.mean, x.shape)
    else:
        raise FclensError(f"params.yaml ablate.noise: {noise.mode!r}; allowed: "
                          f"{', '.join(NOISE_MODES)}")
    return np.where(mask, fill, x).astype(np.float32, copy=False)


def ablation_block(test: Features, head: Head, sets: np.ndarray, noise: Noise, n_random: int
                   ) -> dict[str, float]:
    """All ablations for one noise mode. sets (C, D) bool: each class's influential indices.

    per_class: image of class c gets noise on I_c (or on its complement). union: the union U of
    all I_c on every image (or its complement). random: same-size random sets, mean over seeds.
    """
    x, y = test.x, test.labels
    c, d = sets.shape
    rng = np.random.default_rng(noise.seed)

    def acc(mask: np.ndarray, r: np.random.Generator = rng) -> float:
        return accuracy(head.logits(replace(x, mask, noise, r)), y)

    union = sets.any(0)  # (D,)
    per_img = sets[y]  # (N, D)
    out = {
        "acc_original": accuracy(head.logits(x), y),
        "acc_noise_influential_per_class": acc(per_img),
        "acc_noise_noninfluential_per_class": acc(~per_img),
        "acc_noise_influential_union": acc(union),
        "acc_noise_noninfluential_union": acc(~union),
    }
    rand_union, rand_pc = [], []
    k = sets.sum(1)  # (C,) set size per class
    for s in range(n_random):
        r = np.random.default_rng(noise.seed + 1 + s)
        ru = np.zeros(d, bool)
        ru[r.choice(d, int(union.sum()), replace=False)] = True
        rand_union.append(acc(ru, r))
        rs = np.zeros((c, d), bool)
        for ci in range(c):  # C is small (classes); the work is vectorized over images
            rs[ci, r.choice(d, int(k[ci]), replace=False)] = True
        rand_pc.append(acc(rs[y], r))
    nan = float("nan")
    out["acc_noise_random_union"] = float(np.mean(rand_union)) if rand_union else nan
    out["acc_noise_random_per_class"] = float(np.mean(rand_pc)) if rand_pc else nan
    out["acc_noise_random_union_std"] = float(np.std(rand_union)) if rand_union else nan
    out["union_size"] = int(union.sum())
    return out


def per_class_accuracy(test: Features, head: Head, sets: np.ndarray, noise: Noise
                       ) -> pd.DataFrame:
    """One row per class: accuracy before/after noising its own set or the complement."""
    x, y = test.x, test.labels
    rng = np.random.default_rng(noise.seed)
    c = sets.shape[0]
    n = np.bincount(y, minlength=c).astype(float)

    def acc(xx: np.ndarray) -> np.ndarray:
        hit = (head.logits(xx).argmax(1) == y).astype(float)
        return np.bincount(y, weights=hit, minlength=c) / np.maximum(n, 1)

    return pd.DataFrame({
        "class_index": np.arange(c, dtype=np.int32), "class_name": list(head.names),
        "acc_original": acc(x), "acc_noise_influential": acc(replace(x, sets[y], noise, rng)),
        "acc_noise_noninfluential": acc(replace(x, ~sets[y], noise, rng)), "n_images": n})


def jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Jaccard of two (C, D) boolean masks."""
    return (a & b).sum(1) / np.maximum((a | b).sum(1), 1)


def method_masks(alg1: np.ndarray, head: Head, train: Features) -> dict[str, np.ndarray]:
    """(C, D) masks of equal size k per class from four ways of picking a class's features.

    `tree_terminal` is the split tree's '+' chain read top-down, which is exactly the class's
    k largest weights (every '+' split keeps the values above the subset mean), so it needs no
    tree table.
    """
    c, d = head.w.shape
    k = int(alg1.sum(1).max())
    # mean contribution x_j W[c, j] over the class's training images (= gradient x input, and
    # integrated gradients from a zero baseline, for a linear head)
    sums = np.zeros((c, d))
    np.add.at(sums, train.labels, train.x)
    contrib = sums / np.maximum(np.bincount(train.labels, minlength=c), 1)[:, None] * head.w
    return {
        "algorithm1": alg1,
        "tree_terminal": index_mask(top_k_indices(head.w, k), d),
        "top_abs_weight": index_mask(top_k_indices(np.abs(head.w), k), d),
        "top_contribution": index_mask(top_k_indices(contrib, k), d),
    }


def run_ablations(train: Features, test: Features, head: Head, infl: Influential, cfg, seed: int
                  ) -> tuple[dict, pd.DataFrame]:
    """ablate.json's metrics (every noise mode, the cross-method table) and the per-class table.

    cfg: `noise` (the mode reported at the top level), `noise_modes`, `n_random` (the params
    `ablate` section)."""
    noise, noise_modes, n_random = cfg.noise, cfg.noise_modes, cfg.n_random
    sets = index_mask(infl.idx, head.dim)
    by_noise = {m: ablation_block(test, head, sets, Noise.from_train(m, train, seed), n_random)
                for m in noise_modes}
    main = Noise.from_train(noise, train, seed)
    metrics = {**by_noise[noise], "noise": noise, "by_noise": by_noise}
    for kind in ("influential", "noninfluential"):
        metrics[f"damage_{kind}_per_class"] = (metrics["acc_original"]
                                               - metrics[f"acc_noise_{kind}_per_class"])
    table = {}
    for name, m in method_masks(sets, head, train).items():
        blk = ablation_block(test, head, m, main, 0)
        table[name] = {
            "jaccard_vs_algorithm1": float(jaccard(m, sets).mean()),
            "acc_decomposed": accuracy(decomposed_logits(test.x, head.w, head.b, m), test.labels),
            "acc_noise_own_set_per_class": blk["acc_noise_influential_per_class"],
            "damage_per_class": blk["acc_original"] - blk["acc_noise_influential_per_class"],
            "union_size": blk["union_size"],
        }
    metrics["methods"] = table
    return metrics, per_class_accuracy(test, head, sets, main)
