"""algorithm1: Algorithm 1 with k1 = k2 = k (`decompose.influential_indices`, counted batch by
batch). At k = 5 on the same rows it is decompose's influential set."""

from __future__ import annotations

import numpy as np

from fclens.analysis.decompose import Source, class_counts, index_mask, top_k_indices
from fclens.analysis.sparsify.selection import Context, Sets, per_k


def algorithm1_masks(fit: Source, n_classes: int, ks: list[int]) -> dict[int, np.ndarray]:
    """k -> (C, D) Algorithm 1 with k1 = k2 = k: `decompose.class_counts` in one pass, then each
    class's top k by count, the same indices and tie rules as `decompose.influential_indices`."""
    counts = class_counts(fit, n_classes, ks)  # (K, C, D)
    return {k: index_mask(top_k_indices(counts[i], k), counts.shape[2]) for i, k in enumerate(ks)}


def select(ctx: Context) -> Sets:
    return per_k([ctx.algorithm1[k] for k in ctx.ks])  # computed once per run: csg reads it too
