"""top_signed_weight: the k largest weights of the class's row.

The blog's chain tree keeps the weights at or above the node mean on its '+' side, so every '+'
chain node is a top-n set of the row (`trees.chain_rank`), and the ALD upper-tail probability is
a decreasing function of the weight within a class, so ranking by it gives the same sets. These
are one method, computed once; `ald_cut.equivalences` checks both on the weights at hand."""

from __future__ import annotations

from fclens.analysis.decompose import top_k_indices
from fclens.analysis.sparsify.selection import Context, Sets, first_k, per_k


def select(ctx: Context) -> Sets:
    return per_k(first_k(top_k_indices(ctx.head.w, ctx.head.w.shape[1]), ctx.ks))
