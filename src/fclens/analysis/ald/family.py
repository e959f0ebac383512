"""What the comparison needs to know about a distribution family, in one shape.

A family is one file in `families/` that builds a `Family` and one line in the registry
(`families.FAMILIES`); `compare_families`, `ks_ad`, AIC/BIC and `summary` read only these fields,
so nothing else names a family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Fit = dict[str, np.ndarray]  # a fit: parameter name -> (R,) array, one entry per row


@dataclass(frozen=True)
class Family:
    """A family of laws on the real line, fitted by maximum likelihood per row.

    fit(x (R, N)) -> Fit with at least loglik, loc and scale (each (R,)); R may be 0. Rows are
    independent (see the package docstring), and rows reaching the fit are finite, non-constant,
    >= 3 values and without a point mass above `max_tie_frac`.
    logpdf(x (R, n), fit) -> (R, n): the fitted log-density of each row at that row's points.
    log_cdf_sf(x (R, n), fit) -> (log F, log(1 - F)), each (R, n) and accurate in its own tail
    (the Anderson-Darling statistic needs both ends); -inf only outside the support.
    n_params: free parameters, for AIC and BIC.
    extra: fit keys reported by `compare_families` besides loglik, loc and scale (e.g. df,
    n_iter; a key named `converged` is counted by `summary`'s n_not_converged).
    max_tie_frac: the largest share of weights at one value for which the MLE exists (the
    comparison leaves out rows above the smallest over the registry).
    """

    name: str
    n_params: int
    fit: Callable[[np.ndarray], Fit]
    logpdf: Callable[[np.ndarray, Fit], np.ndarray]
    log_cdf_sf: Callable[[np.ndarray, Fit], tuple[np.ndarray, np.ndarray]]
    extra: tuple[str, ...] = ()
    max_tie_frac: float = 1.0
