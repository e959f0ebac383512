"""The asymmetric Laplace distribution (ALD): exact maximum likelihood per row.

Conventions are scipy's: `scipy.stats.laplace_asymmetric(kappa, loc, scale)` is the fitted law.

ALD MLE. With a(t) = mean((x-t)+), b(t) = mean((t-x)+), maximizing the log-likelihood over scale
and kappa in closed form gives kappa = (b/a)^(1/4), scale = (ab)^(1/4) (sqrt(a) + sqrt(b)) and a
profile log-likelihood per observation of -2 log(sqrt(a) + sqrt(b)) - 1. sqrt(a) + sqrt(b) is
concave between sample points, so the best location is one of the sorted weights: one sort and
two cumulative sums per row give the exact global MLE.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from fclens.analysis.ald.family import Family, Fit
from fclens.analysis.ald.numerics import log1mexp
from fclens.analysis.ald.rows import BOUNDARY_LEFT, BOUNDARY_RIGHT, OK, as_rows, row_status


def fit_ald(x: np.ndarray) -> Fit:
    """Exact ALD MLE per row of x (C, D). Returns loc, scale, kappa, loglik, status (each (C,)).

    Boundary rows (best location at the smallest/largest weight: one side empty) are the limit
    kappa -> 0 / inf, a shifted exponential; they get status boundary_exp_right/left, kappa 0/inf,
    loc at the end point and `scale` = the exponential's mean, with its (finite) log-likelihood.
    """
    x = as_rows(x)
    c, d = x.shape
    status = row_status(x)
    out = {k: np.full(c, np.nan) for k in ("loc", "scale", "kappa", "loglik", "exp_scale")}
    good = status == OK
    if not good.any():
        return {**out, "status": status}
    xs = np.sort(x[good], axis=1)  # (G, D); the sort dominates the cost
    cs = np.cumsum(xs, axis=1)  # (G, D)
    k = np.arange(1, d + 1)  # number of points <= theta when theta = xs[:, k-1]
    b = np.maximum(xs * k - cs, 0.0) / d  # mean((theta - x)+)
    a = np.maximum((cs[:, -1:] - cs) - xs * (d - k), 0.0) / d  # mean((x - theta)+)
    obj = np.sqrt(a) + np.sqrt(b)
    j = np.argmin(obj, axis=1)
    rows = np.arange(len(j))
    aj, bj, loc = a[rows, j], b[rows, j], xs[rows, j]
    loglik = d * (-2.0 * np.log(obj[rows, j]) - 1.0)
    with np.errstate(divide="ignore"):
        kappa = (bj / aj) ** 0.25
    scale = (aj * bj) ** 0.25 * (np.sqrt(aj) + np.sqrt(bj))
    st = np.full(len(j), OK, dtype=object)
    right, left = bj == 0, aj == 0
    st[right], st[left] = BOUNDARY_RIGHT, BOUNDARY_LEFT
    kappa[right], kappa[left] = 0.0, np.inf
    exp_scale = np.where(right, aj, np.where(left, bj, np.nan))
    scale = np.where(right | left, exp_scale, scale)
    for key, v in (("loc", loc), ("scale", scale), ("kappa", kappa), ("loglik", loglik),
                   ("exp_scale", exp_scale)):
        out[key][good] = v
    status[good] = st
    return {**out, "status": status}


def ald_logpdf(x: np.ndarray, loc, scale, kappa) -> np.ndarray:
    """Vectorized ALD log-density (scipy's parametrization), finite also at kappa = 0 / inf."""
    z = (x - loc) / scale
    k = np.asarray(kappa, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = np.log(k / (1 + k * k))
        inner = np.where(z >= 0, -z * k, z / k)
        return np.where(np.isfinite(norm), norm + inner, np.nan) - np.log(scale)


def logpdf(x: np.ndarray, fit: Fit) -> np.ndarray:
    """Log-density of each row's fitted ALD at x (R, n); NaN for a boundary fit (kappa 0 / inf)."""
    return ald_logpdf(x, fit["loc"][:, None], fit["scale"][:, None], fit["kappa"][:, None])


def log_cdf_sf(x: np.ndarray, fit: Fit) -> tuple[np.ndarray, np.ndarray]:
    """log F and log(1 - F) of each row's fitted ALD at x (R, n), each accurate in its own tail.

    Exact -inf only at an end of a finite support: the end point of a boundary fit (a shifted
    exponential whose location is that sample point).
    """
    loc, scale = fit["loc"][:, None], fit["scale"][:, None]
    z = (x - loc) / scale
    k = fit["kappa"][:, None]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # interior kappa: F = k^2/(1+k^2) e^(z/k) below loc, 1 - F = e^(-kz)/(1+k^2) above
        lf_below = np.log(k * k / (1 + k * k)) + z / k
        ls_above = -k * z - np.log1p(k * k)
        lf = np.where(z < 0, lf_below, log1mexp(np.minimum(ls_above, 0)))
        ls = np.where(z < 0, log1mexp(np.minimum(lf_below, 0)), ls_above)
        # kappa = 0: exponential to the right of loc; kappa = inf: to the left
        right, left = k == 0, np.isinf(k)
        lf = np.where(right, np.where(z < 0, -np.inf, log1mexp(-np.maximum(z, 0))), lf)
        ls = np.where(right, np.where(z < 0, 0.0, -np.maximum(z, 0)), ls)
        lf = np.where(left, np.where(z > 0, 0.0, np.minimum(z, 0)), lf)
        ls = np.where(left, np.where(z > 0, -np.inf, log1mexp(np.minimum(z, 0))), ls)
    return lf, ls


def ald_log_tails(x: np.ndarray, loc: np.ndarray, scale: np.ndarray, kappa: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """log P(X <= x) and log P(X >= x) of each row's fitted ALD at x (G, n), each accurate in
    its own tail; boundary fits (kappa 0 / inf) included, NaN for a row without a fit."""
    return log_cdf_sf(np.asarray(x, np.float64), {"loc": np.asarray(loc, np.float64),
                                                  "scale": np.asarray(scale, np.float64),
                                                  "kappa": np.asarray(kappa, np.float64)})




def ald_ppf(q: np.ndarray, loc: np.ndarray, scale: np.ndarray, kappa: np.ndarray) -> np.ndarray:
    """Quantiles at probabilities q (R, n) of each row's ALD (loc, scale, kappa (R,)), boundary
    fits (kappa 0 / inf: a shifted exponential) included; NaN for a row without a fit."""
    q = np.asarray(q, np.float64)
    loc, scale, k = (np.asarray(v, np.float64)[:, None] for v in (loc, scale, kappa))  # (R, 1)
    out = np.full(q.shape, np.nan)  # (R, n)
    inner = ((0 < k) & (k < np.inf))[:, 0]
    out[inner] = stats.laplace_asymmetric.ppf(q[inner], k[inner], loc[inner], scale[inner])
    for side, sign in ((k[:, 0] == 0, 1), (np.isinf(k[:, 0]), -1)):  # exponential right / left
        ppf = stats.expon.ppf(q[side] if sign > 0 else 1 - q[side])
        out[side] = np.sort(loc[side] + sign * ppf * scale[side], axis=1)
    return out


FAMILY = Family("ald", 3, fit_ald, logpdf, log_cdf_sf)
