"""The (symmetric) Laplace: closed-form MLE per row, the ALD with kappa = 1 (the LR test's null)."""

from __future__ import annotations

import numpy as np

from fclens.analysis.ald.family import Family, Fit
from fclens.analysis.ald.numerics import log1mexp
from fclens.analysis.ald.rows import as_rows


def fit_laplace(x: np.ndarray) -> Fit:
    """Laplace MLE per row: the median and the mean absolute deviation from it."""
    x = as_rows(x)
    med = np.median(x, axis=1)
    s = np.abs(x - med[:, None]).mean(1)
    return {"loc": med, "scale": s, "loglik": -x.shape[1] * (np.log(2 * s) + 1)}


def logpdf(x: np.ndarray, fit: Fit) -> np.ndarray:
    """Log-density of each row's fitted Laplace at x (R, n)."""
    s = fit["scale"][:, None]
    return -np.abs(x - fit["loc"][:, None]) / s - np.log(2 * s)


def log_cdf_sf(x: np.ndarray, fit: Fit) -> tuple[np.ndarray, np.ndarray]:
    """log F and log(1 - F) at x (R, n): each side's exponential tail in closed form, the other
    side as log(1 - that), so both stay accurate far from the location."""
    z = (x - fit["loc"][:, None]) / fit["scale"][:, None]
    lf = np.where(z < 0, np.log(0.5) + np.minimum(z, 0), log1mexp(np.log(0.5) - np.abs(z)))
    ls = np.where(z > 0, np.log(0.5) - np.maximum(z, 0), log1mexp(np.log(0.5) - np.abs(z)))
    return lf, ls


FAMILY = Family("laplace", 2, fit_laplace, logpdf, log_cdf_sf)
