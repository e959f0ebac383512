"""Feature ablations under the original FC head: replace index sets by noise, measure accuracy."""

from __future__ import annotations

import numpy as np

from .io import FclensError
from .params import NOISE_MODES


def replace(x: np.ndarray, mask: np.ndarray, mode: str, rng: np.random.Generator,
            mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """x (N, D) with the entries where mask (N, D) [or (D,)] is True replaced by noise.

    standard_normal: N(0, 1) as in the paper's code; feature_stats: N(mean_j, std_j) of the
    training features; zero; train_mean: mean_j (the 'mean ablation').
    """
    mask = np.broadcast_to(mask, x.shape)
    if mode == "standard_normal":
        fill = rng.standard_normal(x.shape, dtype=np.float32)
    elif mode == "feature_stats":
        fill = mean + std * rng.standard_normal(x.shape, dtype=np.float32)
    elif mode == "zero":
        fill = np.zeros_like(x)
    elif mode == "train_mean":
        fill = np.broadcast_to(mean, x.shape)
    else:
        raise FclensError(f"ablate.noise: {mode!r}; allowed: {', '.join(NOISE_MODES)}")
    return np.where(mask, fill, x).astype(np.float32, copy=False)


def _acc(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray) -> float:
    return float(((x @ w.T + b).argmax(1) == y).mean())


def ablation_block(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray,
                   sets: np.ndarray, mode: str, mean: np.ndarray, std: np.ndarray,
                   seed: int, n_random: int) -> dict[str, float]:
    """All ablations for one noise mode. sets (C, D) bool: each class's influential indices.

    per_class: image of class c gets noise on I_c (or on its complement). union: the union U of
    all I_c on every image (or its complement). random: same-size random sets, mean over seeds.
    """
    c, d = sets.shape
    rng = np.random.default_rng(seed)
    union = sets.any(0)  # (D,)
    per_img = sets[y]  # (N, D)
    out = {
        "acc_original": _acc(x, y, w, b),
        "acc_noise_influential_per_class": _acc(replace(x, per_img, mode, rng, mean, std), y, w, b),
        "acc_noise_noninfluential_per_class": _acc(replace(x, ~per_img, mode, rng, mean, std),
                                                   y, w, b),
        "acc_noise_influential_union": _acc(replace(x, union, mode, rng, mean, std), y, w, b),
        "acc_noise_noninfluential_union": _acc(replace(x, ~union, mode, rng, mean, std), y, w, b),
    }
    rand_union, rand_pc = [], []
    k = sets.sum(1)  # (C,) set size per class
    for s in range(n_random):
        r = np.random.default_rng(seed + 1 + s)
        ru = np.zeros(d, bool)
        ru[r.choice(d, int(union.sum()), replace=False)] = True
        rand_union.append(_acc(replace(x, ru, mode, r, mean, std), y, w, b))
        rs = np.zeros((c, d), bool)
        for ci in range(c):  # C is small (classes); the work is vectorized over images
            rs[ci, r.choice(d, int(k[ci]), replace=False)] = True
        rand_pc.append(_acc(replace(x, rs[y], mode, r, mean, std), y, w, b))
    out["acc_noise_random_union"] = float(np.mean(rand_union)) if rand_union else float("nan")
    out["acc_noise_random_per_class"] = float(np.mean(rand_pc)) if rand_pc else float("nan")
    out["acc_noise_random_union_std"] = float(np.std(rand_union)) if rand_union else float("nan")
    out["union_size"] = int(union.sum())
    return out


def per_class_accuracy(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray,
                       sets: np.ndarray, mode: str, mean: np.ndarray, std: np.ndarray,
                       seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    pred0 = (x @ w.T + b).argmax(1)
    pred_inf = (replace(x, sets[y], mode, rng, mean, std) @ w.T + b).argmax(1)
    pred_non = (replace(x, ~sets[y], mode, rng, mean, std) @ w.T + b).argmax(1)
    c = sets.shape[0]
    n = np.bincount(y, minlength=c).astype(float)

    def acc(pred):
        return np.bincount(y, weights=(pred == y).astype(float), minlength=c) / np.maximum(n, 1)

    return {"acc_original": acc(pred0), "acc_noise_influential": acc(pred_inf),
            "acc_noise_noninfluential": acc(pred_non), "n_images": n}


def jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Jaccard of two (C, D) boolean masks."""
    return (a & b).sum(1) / np.maximum((a | b).sum(1), 1)
