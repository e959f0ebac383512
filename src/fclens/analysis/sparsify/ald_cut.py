"""ALD's own cut, and the equivalences of top_signed_weight the report states."""

from __future__ import annotations

import math

import numpy as np

from fclens.analysis import ald, trees
from fclens.analysis.decompose import index_mask, top_k_indices


def ald_tails(w: np.ndarray, fit: dict) -> tuple[np.ndarray, np.ndarray]:
    """(C, D) log upper-tail and log two-sided tail probability of each weight under its class's
    ALD (`fit`: loc, scale, kappa per class); NaN where a class has no fit."""
    lf, ls = ald.ald_log_tails(w, fit["loc"], fit["scale"], fit["kappa"])
    return ls, np.minimum(np.log(2) + np.minimum(lf, ls), 0.0)


def equivalences(w: np.ndarray, ald_fit: dict, ks: list[int]) -> dict[str, bool]:
    """Do the chain tree's '+' nodes and the ALD upper-tail rank give top_signed_weight's sets?

    chain: every node on each class's '+' chain (split to the end, min_size 2) holds exactly the
    row's n largest weights, n its size, and `trees.chain_rank` is the weight order. ald: the
    first k features by upper-tail probability (ascending, ties to the lower index) are the top
    k weights, for every k of the grid, in every class that has a fit.
    """
    top = top_k_indices(w, w.shape[1])
    chain = bool(np.array_equal(trees.chain_rank(w), top))
    for c, row in enumerate(w):
        for node in trees.split_tree(row, "chain", 2, c):
            if node.chain_sign == "+":
                n = len(node.indices)
                chain &= set(node.indices.tolist()) == set(top[c, :n].tolist())
    log_sf, _ = ald_tails(w, ald_fit)
    fitted = ~np.isnan(log_sf).any(1)  # -inf: the end point of a boundary fit, ranked first
    by_tail = np.argsort(log_sf, axis=1, kind="stable")
    same = all(np.array_equal(index_mask(by_tail[fitted, :k], w.shape[1]),
                              index_mask(top[fitted, :k], w.shape[1])) for k in ks)
    return {"chain_tree_terminals": chain, "ald_upper_tail_rank": bool(same and fitted.any()),
            "ald_classes_checked": int(fitted.sum())}


def natural_cut(w: np.ndarray, ald_fit: dict, p: float) -> dict[str, np.ndarray]:
    """(C, D) masks: weights whose upper-tail (one_sided) or two-sided tail probability under
    the class's ALD is below p. A class without a fit keeps nothing."""
    log_sf, log_two = ald_tails(w, ald_fit)
    with np.errstate(invalid="ignore"):
        return {"one_sided": log_sf < math.log(p), "two_sided": log_two < math.log(p)}
