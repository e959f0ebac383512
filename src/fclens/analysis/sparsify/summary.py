"""The metrics contract's per-method series and summaries, from the scored points."""

from __future__ import annotations

import numpy as np

from fclens.analysis.sparsify.bank import Point


def series(grid: list[list[Point | None]], ks: list[int], control: bool) -> dict:
    """A method's lists over the grid (`grid` (S, K): points per seed and grid k)."""
    return _random_series(grid, ks) if control else _series(grid[0], ks)


def _series(pts: list[Point | None], ks: list[int]) -> dict:
    """The contract's lists over the grid; None where a method never reaches k."""
    def get(name: str) -> list:
        return [None if p is None else getattr(p, name) for p in pts]
    return {"k": ks, "acc": get("acc"), "acc_refit": get("acc_refit"), "nec": get("nec"),
            "union_size": get("union")}


def _random_series(seeds: list[list[Point]], ks: list[int]) -> dict:
    """Mean over seeds, and the std of the accuracies."""
    acc = np.array([[p.acc for p in pts] for pts in seeds])  # (S, K)
    ref = np.array([[p.acc_refit for p in pts] for pts in seeds])
    union = np.array([[p.union for p in pts] for pts in seeds], float)
    return {"k": ks, "acc": acc.mean(0).tolist(), "acc_refit": ref.mean(0).tolist(),
            "nec": [float(k) for k in ks], "union_size": union.mean(0).tolist(),
            "acc_std": acc.std(0).tolist(), "acc_refit_std": ref.std(0).tolist(),
            "n_seeds": len(seeds)}


def summary(v: dict, dense: float) -> dict:
    """auc: mean refit accuracy over the grid (points a method never reaches left out);
    k_at_95: the NEC of the first grid point whose refit accuracy reaches 95% of dense."""
    acc = np.array([np.nan if a is None else a for a in v["acc_refit"]], float)
    hit = np.flatnonzero(acc >= 0.95 * dense)
    return {"auc": float(np.nanmean(acc)) if np.isfinite(acc).any() else None,
            "k_at_95": v["nec"][hit[0]] if len(hit) else None}


def best_at(methods: dict, k: int, controls: set[str]) -> str | None:
    """The method with the highest refit accuracy at grid k (controls excluded)."""
    cands = {m: v["acc_refit"][v["k"].index(k)] for m, v in methods.items()
             if m not in controls and k in v["k"]}
    cands = {m: a for m, a in cands.items() if a is not None}
    return max(cands, key=cands.get) if cands else None


def natural_cut_summary(cut: Point, top: Point, top_abs: Point, k_same: int,
                        size: np.ndarray) -> dict:
    """metrics `ald_natural_cut.<side>`: the cut (set sizes `size` (C,)) against the top
    k_same signed and absolute weights of every class."""
    return {"mean_k": cut.nec, "min_k": int(size.min()), "max_k": int(size.max()),
            "acc": cut.acc, "acc_refit": cut.acc_refit, "union_size": cut.union,
            "k_top_signed_same_k": k_same, "acc_top_signed_same_k": top.acc,
            "acc_refit_top_signed_same_k": top.acc_refit,
            "acc_top_abs_same_k": top_abs.acc, "acc_refit_top_abs_same_k": top_abs.acc_refit}
