"""random: a seeded permutation per class and seed, its first k (nested in k); a control,
reported as the mean and std over `n_random` seeds."""

from __future__ import annotations

import numpy as np

from fclens.analysis.sparsify.selection import Context, Sets, first_k


def random_rankings(n_classes: int, dim: int, seed: int, n: int) -> np.ndarray:
    """(n, C, D): per seed s (seed + 1 + s, as ablate's controls) a permutation per class."""
    return np.stack([np.argsort(np.random.default_rng(seed + 1 + s).random((n_classes, dim)),
                                axis=1, kind="stable") for s in range(n)])


def select(ctx: Context) -> Sets:
    c, d = ctx.head.w.shape
    rankings = random_rankings(c, d, ctx.seed, ctx.params.n_random)  # (S, C, D)
    masks = [m for r in rankings for m in first_k(r, ctx.ks)]  # seed-major
    n_k = len(ctx.ks)
    return Sets(masks, [list(range(s * n_k, (s + 1) * n_k)) for s in range(len(rankings))],
                control=True)
