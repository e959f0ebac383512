"""The whole comparison: every method of params `sparsify.methods` over the k grid, ALD's
natural cut and global pruning, all scored in one refit and one test pass."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fclens.analysis.ablate import TrainStats, jaccard
from fclens.analysis.decompose import Source, index_mask, top_k_indices
from fclens.analysis.sparsify.ald_cut import equivalences, natural_cut
from fclens.analysis.sparsify.bank import Bank
from fclens.analysis.sparsify.global_pruning import global_masks, global_scores
from fclens.analysis.sparsify.methods import METHODS, csg
from fclens.analysis.sparsify.methods.algorithm1 import algorithm1_masks
from fclens.analysis.sparsify.methods.top_contribution import contribution
from fclens.analysis.sparsify.rows import WHERE, Part, carve_validation
from fclens.analysis.sparsify.selection import Context
from fclens.analysis.sparsify.summary import best_at, natural_cut_summary, series, summary
from fclens.core.constants import GLOBAL_PRUNING
from fclens.core.errors import FclensError
from fclens.core.tables import Head, Influential

if TYPE_CHECKING:
    from fclens.core.params import Sparsify

log = logging.getLogger(__name__)

DEFAULT_K_GRID = (1, 2, 3, 5, 8, 10, 15, 20, 30, 40, 64)


@dataclass(frozen=True)
class Result:
    metrics: dict
    rows: list[dict]  # the plot series, one row per (method, k)
    timing: dict  # seconds per part: metrics/timing, never in the science metrics
    sets: dict[str, np.ndarray | list]  # the sparse_sets table: per (method, grid k, class) the
    # kept features and their no-refit weights; controls (random) left out
    heads: dict[str, np.ndarray | list]  # the sparse_heads table (`head_rows`)


def head_rows(sets: dict, points: dict, bank: Bank, ks: list[int]) -> dict[str, list]:
    """The sparse_heads columns: every method's refit head at each grid k (`<method>_refit`),
    and the head its own rule selects, as the method made it (`<method>_selected`, k its
    rounded NEC). Whole (C, D) heads, zeros off the set: what an attack needs."""
    cols = {"head": [], "k": [], "class_index": [], "bias": [], "weight": []}

    def add(name: str, k: int, w: np.ndarray, b: np.ndarray) -> None:
        for c in range(len(w)):
            cols["head"].append(name)
            cols["k"].append(k)
            cols["class_index"].append(c)
            cols["bias"].append(float(b[c]))
            cols["weight"].append(w[c].astype(np.float32))

    for m, s in sets.items():
        if s.control:
            continue
        for k, at in zip(ks, s.grid[0]):
            if at is not None:
                h = bank.refit_heads[points[m][at].refit_index]
                add(f"{m}_refit", k, h.w, h.b)
        if s.selected is not None:
            p = points[m][s.selected]
            add(f"{m}_selected", round(p.nec), *bank.heads[p.no_refit_index])
    return cols


def set_rows(sets: dict, ks: list[int], w: np.ndarray) -> dict[str, np.ndarray | list]:
    """The sparse_sets columns of every non-control method's candidate at each grid k."""
    cols = {"method": [], "k": [], "class_index": [], "feature_index": [], "weight": []}
    for m, s in sets.items():
        if s.control:
            continue
        for k, at in zip(ks, s.grid[0]):
            if at is None:
                continue
            mask, own = s.masks[at], (s.weights[at][0] if s.weights else w)  # (C, D) each
            for c in range(len(mask)):
                idx = np.flatnonzero(mask[c])
                idx = idx[np.argsort(-own[c, idx], kind="stable")]  # largest weight first
                cols["method"].append(m)
                cols["k"].append(k)
                cols["class_index"].append(c)
                cols["feature_index"].append(idx.astype(np.int32))
                cols["weight"].append(own[c, idx].astype(np.float32))
    return cols


def check_methods(names: Iterable[str]) -> None:
    """Every name must be a registered method (`methods.METHODS`)."""
    if bad := [m for m in names if m not in METHODS]:
        raise FclensError(f"{WHERE}.methods: unknown method {bad[0]!r}; allowed: "
                          f"{', '.join(METHODS)}")


def resolve_grid(k_grid: list[int] | None, dim: int, model: str = "") -> list[int]:
    """The k grid for a feature dimension D: the default grid drops its values above D; in an
    explicit grid a value above D is an error."""
    if k_grid is None:
        return [k for k in DEFAULT_K_GRID if k <= dim]
    if bad := [k for k in k_grid if not 1 <= k <= dim]:
        raise FclensError(f"{WHERE}.k_grid: {bad} outside 1..{dim} (the feature dimension"
                          f"{' of ' + model if model else ''}); allowed: integers in 1..{dim}")
    return sorted(set(k_grid))


class _Clock:
    def __init__(self) -> None:
        self.t, self.laps = time.perf_counter(), {}

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[f"seconds_{name}"] = self.laps.get(f"seconds_{name}", 0.0) + now - self.t
        log.info("%s: %.1f s", name, now - self.t)
        self.t = now


def run(train: Source, test: Source, head: Head, ald_fit: dict, params: Sparsify, seed: int,
        influential: Influential | None = None, model: str = "") -> Result:
    """Every method of `params.methods` over the k grid, the ALD natural cut and global pruning.

    `params`: the validated params.yaml sparsify section (`core.params.Sparsify`); `seed`: the
    params seed (validation split, random sets, solvers, refit order).
    `ald_fit`: loc, scale, kappa (C,) of each class's ALD (the fit_ald stage's table).
    `influential`: decompose's set, to report its Jaccard with algorithm1 at its k.
    """
    check_methods(params.methods)
    clock = _Clock()
    c, d = head.w.shape
    ks = resolve_grid(params.k_grid, d, model)
    is_val = carve_validation(train, params.val_fraction, seed)
    fit = Part(train, ~is_val)
    stats = TrainStats.from_source(fit, c)
    alg1 = algorithm1_masks(fit, c, ks)
    ctx = Context(head, ks, train, is_val, fit, stats, contribution(stats, head.w), alg1, params,
                  seed)
    clock("scan")
    bank = Bank(head)
    sets, points = {}, {}
    for m in params.methods:
        sets[m] = METHODS[m](ctx)
        own = sets[m].weights or [None] * len(sets[m].masks)
        points[m] = [bank.add(mask, w) for mask, w in zip(sets[m].masks, own)]
        clock(m)
    by_weight, by_abs = top_k_indices(head.w, d), top_k_indices(np.abs(head.w), d)  # (C, D)
    cut_points = {}
    for name, mask in natural_cut(head.w, ald_fit, params.ald_natural_cut_p).items():
        k_same = max(1, round(float(mask.sum(1).mean())))
        cut_points[name] = (bank.add(mask), bank.add(index_mask(by_weight[:, :k_same], d)),
                            bank.add(index_mask(by_abs[:, :k_same], d)), k_same, mask.sum(1))
    scores = global_scores(head.w, ctx.contribution, ald_fit)
    glob = global_masks({g: scores[g] for g in GLOBAL_PRUNING}, params.global_fractions)
    glob_points = {g: [bank.add(m) for m in masks] for g, masks in glob.items()}
    dense = bank.add(np.ones_like(head.w, bool))  # the whole head refit: the refit reference
    clock("select")
    bank.score(fit, test, params.refit, seed)
    clock("refit_and_test")
    methods = {}
    for m, s in sets.items():
        grid = [[None if i is None else points[m][i] for i in row] for row in s.grid]
        methods[m] = series(grid, ks, s.control)
        methods[m].update(summary(methods[m], bank.dense_acc))
    metrics = {
        "dense_acc": bank.dense_acc, "dense_refit_acc": dense.acc_refit, "n_classes": c,
        "feature_dim": d, "k_grid": ks,
        "split": {"seed": seed, "val_fraction": params.val_fraction,
                  "n_fit": int((~is_val).sum()), "n_val": int(is_val.sum())},
        "methods": methods,
        "best_method_at_k5": best_at(methods, 5, {m for m, s in sets.items() if s.control}),
        "equivalences": equivalences(head.w, ald_fit, ks),
        # the contract keeps these two sections when their method is not run
        "elastic_net": None, "csg": csg.section(params.csg),
        **{m: s.section(points[m]) for m, s in sets.items() if s.section},
        "ald_natural_cut": {"p": params.ald_natural_cut_p,
                            **{name: natural_cut_summary(*v) for name, v in cut_points.items()}},
        "global": {g: {"fraction": [float(m.mean()) for m in glob[g]],
                       "acc": [p.acc for p in pts], "acc_refit": [p.acc_refit for p in pts]}
                   for g, pts in glob_points.items()},
        "refit": {"epochs": params.refit.epochs, "lr": params.refit.lr,
                  "batch_size": params.refit.batch_size, "optimizer": params.refit.optimizer,
                  "n_heads": len(bank.masks)},
    }
    if influential is not None and influential.idx.shape[1] in ks:
        k = influential.idx.shape[1]
        metrics["algorithm1_vs_influential"] = {
            "k": k, "jaccard": float(jaccard(alg1[k], index_mask(influential.idx, d)).mean())}
    rows = [{"method": m, "k": k, "nec": v["nec"][i], "acc": v["acc"][i],
             "acc_refit": v["acc_refit"][i]} for m, v in methods.items() for i, k in enumerate(ks)]
    clock("summary")
    return Result(metrics, rows, {**clock.laps, "seconds": sum(clock.laps.values())},
                  set_rows(sets, ks, head.w), head_rows(sets, points, bank, ks))
