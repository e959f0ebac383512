"""top_contribution: the k largest mean contributions x_j W[c, j] over the class's fit images."""

from __future__ import annotations

import numpy as np

from fclens.analysis.ablate import TrainStats
from fclens.analysis.decompose import top_k_indices
from fclens.analysis.sparsify.selection import Context, Sets, first_k, per_k


def contribution(stats: TrainStats, w: np.ndarray) -> np.ndarray:
    """(C, D) mean x_j W[c, j] over the class's fit images (gradient x input of a linear head,
    as ablate's top_contribution)."""
    return stats.class_sums / np.maximum(stats.class_counts, 1)[:, None] * w


def select(ctx: Context) -> Sets:
    return per_k(first_k(top_k_indices(ctx.contribution, ctx.head.w.shape[1]), ctx.ks))
