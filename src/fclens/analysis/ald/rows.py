"""Rows of a weight matrix: the C-order float64 view every fit reads, and why a row cannot be
fitted (its status)."""

from __future__ import annotations

import numpy as np

from fclens.core.errors import FclensError

# statuses of a row (fit_ald adds the two boundary ones)
OK, BOUNDARY_RIGHT, BOUNDARY_LEFT = "ok", "boundary_exp_right", "boundary_exp_left"
CONSTANT, TOO_FEW, NONFINITE = "constant", "too_few", "nonfinite"
TIES = "ties"  # compare_families only: >= 2 weights at one value, more than a family allows
DEGENERATE = (CONSTANT, TOO_FEW, NONFINITE, TIES)


def as_rows(x: np.ndarray, what: str = "weights") -> np.ndarray:
    """x as a C-contiguous float64 (C, D) array.

    C order matters for determinism: numpy sums a C-ordered row pairwise whatever the number of
    rows, but an F-ordered matrix would be summed column by column (another rounding).
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise FclensError(f"{what} must be a (C, D) matrix, got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float64)


def row_status(x: np.ndarray) -> np.ndarray:
    """Per row: 'ok' or why no fit is possible (constant row, < 3 weights, non-finite values)."""
    x = np.asarray(x)
    status = np.full(x.shape[0], OK, dtype=object)
    if x.shape[1] < 3:
        status[:] = TOO_FEW
        return status
    finite = np.isfinite(x).all(axis=1)
    status[~finite] = NONFINITE
    const = np.zeros(x.shape[0], bool)
    const[finite] = np.ptp(x[finite], axis=1) == 0
    status[const] = CONSTANT
    return status


def tie_count(x: np.ndarray) -> np.ndarray:
    """Per row of x (C, D): how many weights share the most frequent exact value (1: no ties)."""
    xs = np.sort(as_rows(x), axis=1)  # (C, D)
    c, d = xs.shape
    new = np.ones(xs.shape, bool)
    new[:, 1:] = xs[:, 1:] != xs[:, :-1]  # a run of equal values starts here
    run = np.cumsum(new, axis=1) - 1 + d * np.arange(c)[:, None]  # run ids, distinct per row
    return np.bincount(run.ravel(), minlength=c * d).reshape(c, d).max(1)
