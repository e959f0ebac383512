"""Feature ablations under the original FC head: replace index sets by noise, measure accuracy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fclens.analysis.decompose import Source, accuracies, batches, index_mask, top_k_indices
from fclens.core.constants import NOISE_MODES
from fclens.core.errors import FclensError
from fclens.core.tables import Head, Influential


@dataclass(frozen=True)
class TrainStats:
    """What the ablations need from the training features, from one streamed pass."""

    mean: np.ndarray  # (D,) float32
    std: np.ndarray  # (D,) float32, population std
    class_sums: np.ndarray  # (C, D) float64, sum of each class's feature vectors
    class_counts: np.ndarray  # (C,) int64

    @classmethod
    def from_source(cls, train: Source, n_classes: int) -> TrainStats:
        n, mean, m2, sums, counts = 0, 0.0, 0.0, None, 0
        for f in batches(train):
            x = f.x.astype(np.float64)  # (B, D)
            if sums is None:
                sums = np.zeros((n_classes, x.shape[1]))
            # Chan et al.'s pairwise merge of (count, mean, M2): exact enough in float64 and,
            # unlike sum(x^2) - n mean^2, free of cancellation
            nb, mb = len(x), x.mean(0)
            m2b = ((x - mb) ** 2).sum(0)
            delta = mb - mean
            mean = mean + delta * nb / (n + nb)
            m2 = m2 + m2b + delta ** 2 * n * nb / (n + nb)
            n += nb
            order = np.argsort(f.labels, kind="stable")
            ys = f.labels[order]
            starts = np.flatnonzero(np.r_[True, ys[1:] != ys[:-1]])
            sums[ys[starts]] += np.add.reduceat(x[order], starts, axis=0)
            counts = counts + np.bincount(f.labels, minlength=n_classes)
        if sums is None:
            raise FclensError("training features: 0 rows; expected at least 1")
        return cls(np.asarray(mean, np.float32), np.sqrt(m2 / n).astype(np.float32), sums,
                   counts)


@dataclass(frozen=True)
class Noise:
    """How ablated entries are filled; mean/std (D,) are the training features' statistics."""

    mode: str
    mean: np.ndarray
    std: np.ndarray
    seed: int

    @classmethod
    def from_train(cls, mode: str, stats: TrainStats, seed: int) -> Noise:
        return cls(mode, stats.mean, stats.std, seed)


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


def class_hits(test: Source, head: Head, n_classes: int,
               mask_of: Callable[[np.ndarray], np.ndarray] | None = None,
               noise: Noise | None = None, rng: np.random.Generator | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """One streamed pass over `test`: per class, (correct, images) of the head on features
    whose entries mask_of(labels) ((B, D) or (D,) bool) are replaced by `noise` drawn from
    `rng`. Batches draw from `rng` in row order, so the noise (and every result) is the same as
    one draw over the whole split."""
    hits, n = np.zeros(n_classes, np.int64), np.zeros(n_classes, np.int64)
    for f in batches(test):
        x = f.x if mask_of is None else replace(f.x, mask_of(f.labels), noise, rng)
        ok = head.logits(x).argmax(1) == f.labels
        hits += np.bincount(f.labels[ok], minlength=n_classes)
        n += np.bincount(f.labels, minlength=n_classes)
    return hits, n


def _acc(hits_n: tuple[np.ndarray, np.ndarray]) -> float:
    hits, n = hits_n
    return float(hits.sum() / n.sum()) if n.sum() else float("nan")


def ablation_block(test: Source, head: Head, sets: np.ndarray, noise: Noise, n_random: int
                   ) -> dict[str, float]:
    """All ablations for one noise mode. sets (C, D) bool: each class's influential indices.

    per_class: image of class c gets noise on I_c (or on its complement). union: the union U of
    all I_c on every image (or its complement). random: same-size random sets, mean over seeds.
    One streamed pass over `test` per ablation.
    """
    c, d = sets.shape
    rng = np.random.default_rng(noise.seed)

    def acc(mask_of: Callable[[np.ndarray], np.ndarray], r: np.random.Generator = rng) -> float:
        return _acc(class_hits(test, head, c, mask_of, noise, r))

    union = sets.any(0)  # (D,)
    out = {
        "acc_original": _acc(class_hits(test, head, c)),
        "acc_noise_influential_per_class": acc(lambda y: sets[y]),
        "acc_noise_noninfluential_per_class": acc(lambda y: ~sets[y]),
        "acc_noise_influential_union": acc(lambda y: union),
        "acc_noise_noninfluential_union": acc(lambda y: ~union),
    }
    rand_union, rand_pc = [], []
    k = sets.sum(1)  # (C,) set size per class
    for s in range(n_random):
        r = np.random.default_rng(noise.seed + 1 + s)
        ru = np.zeros(d, bool)
        ru[r.choice(d, int(union.sum()), replace=False)] = True
        rand_union.append(acc(lambda y, ru=ru: ru, r))
        rs = np.zeros((c, d), bool)
        for ci in range(c):  # C is small (classes); the work is vectorized over images
            rs[ci, r.choice(d, int(k[ci]), replace=False)] = True
        rand_pc.append(acc(lambda y, rs=rs: rs[y], r))
    nan = float("nan")
    out["acc_noise_random_union"] = float(np.mean(rand_union)) if rand_union else nan
    out["acc_noise_random_per_class"] = float(np.mean(rand_pc)) if rand_pc else nan
    out["acc_noise_random_union_std"] = float(np.std(rand_union)) if rand_union else nan
    out["union_size"] = int(union.sum())
    return out


def per_class_accuracy(test: Source, head: Head, sets: np.ndarray, noise: Noise
                       ) -> pd.DataFrame:
    """One row per class: accuracy before/after noising its own set or the complement."""
    rng = np.random.default_rng(noise.seed)
    c = sets.shape[0]

    def acc(mask_of=None) -> tuple[np.ndarray, np.ndarray]:
        hits, n = class_hits(test, head, c, mask_of, noise, rng)
        return hits / np.maximum(n, 1), n.astype(float)

    orig, n = acc()
    return pd.DataFrame({
        "class_index": np.arange(c, dtype=np.int32), "class_name": list(head.names),
        "acc_original": orig, "acc_noise_influential": acc(lambda y: sets[y])[0],
        "acc_noise_noninfluential": acc(lambda y: ~sets[y])[0], "n_images": n})


def jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Jaccard of two (C, D) boolean masks."""
    return (a & b).sum(1) / np.maximum((a | b).sum(1), 1)


def method_masks(alg1: np.ndarray, head: Head, stats: TrainStats) -> dict[str, np.ndarray]:
    """(C, D) masks of equal size k per class from four ways of picking a class's features.

    `tree_terminal` is the split tree's '+' chain read top-down, which is exactly the class's
    k largest weights (every '+' split keeps the values above the subset mean), so it needs no
    tree table.
    """
    c, d = head.w.shape
    k = int(alg1.sum(1).max())
    # mean contribution x_j W[c, j] over the class's training images (= gradient x input, and
    # integrated gradients from a zero baseline, for a linear head)
    contrib = stats.class_sums / np.maximum(stats.class_counts, 1)[:, None] * head.w
    return {
        "algorithm1": alg1,
        "tree_terminal": index_mask(top_k_indices(head.w, k), d),
        "top_abs_weight": index_mask(top_k_indices(np.abs(head.w), k), d),
        "top_contribution": index_mask(top_k_indices(contrib, k), d),
    }


def run_ablations(train: Source, test: Source, head: Head, infl: Influential, cfg, seed: int
                  ) -> tuple[dict, pd.DataFrame]:
    """ablate.json's metrics (every noise mode, the cross-method table) and the per-class table.

    cfg: `noise` (the mode reported at the top level), `noise_modes`, `n_random` (the params
    `ablate` section). One pass over train; a few passes over test per ablation."""
    noise, noise_modes, n_random = cfg.noise, cfg.noise_modes, cfg.n_random
    stats = TrainStats.from_source(train, head.n_classes)
    sets = index_mask(infl.idx, head.dim)
    by_noise = {m: ablation_block(test, head, sets, Noise.from_train(m, stats, seed), n_random)
                for m in noise_modes}
    main = Noise.from_train(noise, stats, seed)
    metrics = {**by_noise[noise], "noise": noise, "by_noise": by_noise}
    for kind in ("influential", "noninfluential"):
        metrics[f"damage_{kind}_per_class"] = (metrics["acc_original"]
                                               - metrics[f"acc_noise_{kind}_per_class"])
    table = {}
    for name, m in method_masks(sets, head, stats).items():
        blk = ablation_block(test, head, m, main, 0)
        table[name] = {
            "jaccard_vs_algorithm1": float(jaccard(m, sets).mean()),
            "acc_decomposed": accuracies(test, [(head.w * m, head.b)])[0],
            "acc_noise_own_set_per_class": blk["acc_noise_influential_per_class"],
            "damage_per_class": blk["acc_original"] - blk["acc_noise_influential_per_class"],
            "union_size": blk["union_size"],
        }
    metrics["methods"] = table
    return metrics, per_class_accuracy(test, head, sets, main)
