"""Global pruning: keep a fraction of all C x D weights of the head by one score."""

from __future__ import annotations

import math

import numpy as np

from fclens.analysis.sparsify.ald_cut import ald_tails


def global_scores(w: np.ndarray, contribution: np.ndarray, ald_fit: dict) -> dict[str, np.ndarray]:
    """name (`constants.GLOBAL_PRUNING`) -> (C, D) score: |W|, the two-sided ALD tail
    probability (each class scaled by its own fit; higher = rarer) and |contribution|."""
    _, log_two = ald_tails(w, ald_fit)
    return {"magnitude": np.abs(w), "ald_tail": -log_two, "contribution": np.abs(contribution)}


def global_masks(scores: dict[str, np.ndarray], fractions: list[float]) -> dict[str, np.ndarray]:
    """name -> (F, C, D): the floor(f * C * D + 0.5) highest-scoring weights of the whole matrix
    for each fraction f (ties to the lower flat index), so the kept count is exact."""
    out = {}
    for name, s in scores.items():
        order = np.argsort(-np.nan_to_num(s, nan=-np.inf).ravel(), kind="stable")
        masks = np.zeros((len(fractions), s.size), bool)
        for i, f in enumerate(fractions):
            masks[i, order[:math.floor(f * s.size + 0.5)]] = True
        out[name] = masks.reshape(len(fractions), *s.shape)
    return out
