"""The one shape of a selection method: `select(ctx: Context) -> Sets`.

A method reads what it needs of the run's `Context` (the head, the k grid, the fit and validation
rows, the fit part's statistics, its params) and returns its distinct candidate sets, each a
(C, D) mask of the features every class keeps, plus which candidate each grid k uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fclens.analysis.ablate import TrainStats
from fclens.analysis.decompose import Source, index_mask
from fclens.core.tables import Head

if TYPE_CHECKING:
    from fclens.analysis.sparsify.bank import Point
    from fclens.core.params import Sparsify


@dataclass(frozen=True)
class Context:
    """What a method may read, computed once per run."""

    head: Head
    ks: list[int]  # the k grid, ascending, each in 1..D
    train: Source  # the whole training split: fit and validation rows
    is_val: np.ndarray  # (N,) bool over train: the validation rows
    fit: Source  # the fit rows of train (`rows.Part`), re-iterable
    stats: TrainStats  # of the fit rows
    contribution: np.ndarray  # (C, D) mean x_j W[c, j] over the class's fit images
    algorithm1: dict[int, np.ndarray]  # grid k -> (C, D) Algorithm 1 with k1 = k2 = k
    params: Sparsify  # the params.yaml sparsify section
    seed: int


@dataclass(frozen=True)
class Sets:
    """A method's answer. Each candidate is scored once (no refit and refit); `grid` says which
    candidate each grid k uses."""

    masks: list[np.ndarray]  # the candidates, (C, D) bool each, in scoring order
    grid: list[list[int | None]]  # (S, K) candidate index per seed (one, except for a control)
    # and grid k; None: the method never reaches k
    weights: list[tuple[np.ndarray, np.ndarray]] | None = None  # per candidate the method's own
    # no-refit head (w (C, D), b (C,)) (elastic_net); None: the original weights, masked
    control: bool = False  # a seeded control (random): mean and std over seeds, never "best"
    section: Callable[[list[Point]], dict] | None = None  # the method's own metrics section
    # (metrics[name]) from its scored candidates, in the order of `masks`
    selected: int | None = None  # the candidate the method's own rule picks (elastic_net's
    # lambda on the validation part): its head is written to the sparse_heads table


def per_k(masks: list[np.ndarray | None]) -> Sets:
    """One (C, D) mask per grid k, None where the method never reaches k."""
    kept = [m for m in masks if m is not None]
    at, grid = 0, []
    for m in masks:
        grid.append(None if m is None else at)
        at += m is not None
    return Sets(kept, [grid])


def first_k(order: np.ndarray, ks: list[int]) -> list[np.ndarray]:
    """Per grid k, the (C, D) mask of each class's first k features of `order` (C, D), a
    per-class ranking."""
    return [index_mask(order[:, :k], order.shape[1]) for k in ks]
