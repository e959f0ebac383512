"""top_abs_weight: the k largest |W[c, j]| of the class's row."""

from __future__ import annotations

import numpy as np

from fclens.analysis.decompose import top_k_indices
from fclens.analysis.sparsify.selection import Context, Sets, first_k, per_k


def select(ctx: Context) -> Sets:
    return per_k(first_k(top_k_indices(np.abs(ctx.head.w), ctx.head.w.shape[1]), ctx.ks))
