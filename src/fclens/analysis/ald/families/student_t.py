"""The Student-t: MLE per row by a df-grid profile for a start, then per-row Newton."""

from __future__ import annotations

import numpy as np
from scipy import special

from fclens.analysis.ald.family import Family, Fit
from fclens.analysis.ald.numerics import newton_rows, standardize
from fclens.analysis.ald.rows import as_rows

# Student-t df in [0.05, 1.6e5]; at 1.6e5 it is a Gaussian to ~1e-7 nats per weight
LOG_NU_BOUNDS = (-3.0, 12.0)
# With k of n weights at one value, the Student-t loglik near scale s -> 0 (loc at that value)
# goes as ((n - k) df - k) log s: unbounded, so no t MLE exists, once k/n > df/(1 + df) at the
# smallest df allowed. Such rows (pruned or zero-initialised heads) hold a point mass that no
# continuous family fits, and the comparison leaves them out (Family.max_tie_frac).
MAX_TIE_FRAC = float(np.exp(LOG_NU_BOUNDS[0]) / (1 + np.exp(LOG_NU_BOUNDS[0])))


def _t_const(nu: np.ndarray) -> np.ndarray:
    """Log of the Student-t normalizer at unit scale (nu (G, 1) or (G,))."""
    return special.gammaln((nu + 1) / 2) - special.gammaln(nu / 2) - 0.5 * np.log(nu * np.pi)


def _t_loglik(y: np.ndarray, mu: np.ndarray, log_s: np.ndarray, nu: np.ndarray) -> np.ndarray:
    """Sum over axis 1 of the Student-t log-density; mu, log_s, nu (G, 1)."""
    z = (y - mu) / np.exp(log_s)
    return (y.shape[1] * (_t_const(nu) - log_s)[:, 0]
            - (nu[:, 0] + 1) / 2 * np.log1p(z * z / nu).sum(1))


def _t_em(y: np.ndarray, nu: float, mu: np.ndarray, s2: np.ndarray, iters: int
          ) -> tuple[np.ndarray, np.ndarray]:
    """EM for Student-t location/scale at fixed df, vectorized over rows (mu, s2 (G, 1))."""
    for _ in range(iters):
        r = y - mu
        w = (nu + 1) / (nu + r * r / s2)
        mu = (w * y).sum(1, keepdims=True) / w.sum(1, keepdims=True)
        r = y - mu
        s2 = (w * r * r).mean(1, keepdims=True)
    return mu, s2


def _t_ll(y: np.ndarray, th: np.ndarray) -> np.ndarray:
    """Student-t loglik per row of y (G, D) at th = (mu, log s, log df) (G, 3)."""
    return _t_loglik(y, th[:, :1], th[:, 1:2], np.exp(th[:, 2:3]))


def _t_ll_grad_hess(y: np.ndarray, th: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Loglik (G,), gradient (G, 3) and Hessian (G, 3, 3) in (mu, eta = log s, lam = log df).

    The loglik is sum_i [c(nu) - eta - (nu+1)/2 log(1 + z_i^2/nu)], z = (y - mu)/s, c the
    normalizer (_t_const); the derivatives are written out by hand (tests check them against
    finite differences), so one pass over the (G, D) data gives all of them.
    """
    d = y.shape[1]
    mu, eta, lam = th[:, :1], th[:, 1:2], th[:, 2:3]  # (G, 1)
    s, nu = np.exp(eta), np.exp(lam)
    z = (y - mu) / s  # (G, D)
    z2 = z * z
    den = nu + z2
    q = np.log1p(z2 / nu)
    w = (nu + 1) / den  # EM weights
    e = (z2 - 1) / (den * den)
    s_q, s_wz2 = q.sum(1), (w * z2).sum(1)
    s_wz2_d, s_wz_d = (w * z2 / den).sum(1), (w * z / den).sum(1)
    s_ze, s_z2e, s_z2_d = (z * e).sum(1), (z2 * e).sum(1), (z2 / den).sum(1)
    nu0, s0 = nu[:, 0], s[:, 0]
    c1 = 0.5 * (special.digamma((nu0 + 1) / 2) - special.digamma(nu0 / 2)) - 0.5 / nu0
    c2 = 0.25 * (special.polygamma(1, (nu0 + 1) / 2) - special.polygamma(1, nu0 / 2)) \
        + 0.5 / nu0 ** 2
    ll = d * (_t_const(nu0) - eta[:, 0]) - (nu0 + 1) / 2 * s_q
    g = np.stack([(w * z).sum(1) / s0, s_wz2 - d,
                  d * nu0 * c1 - nu0 / 2 * s_q + 0.5 * s_wz2], 1)
    h_mm = (2 * s_wz2_d - w.sum(1)) / s0 ** 2
    h_me = -2 * nu0 * s_wz_d / s0
    h_ee = -2 * nu0 * s_wz2_d
    h_ml = nu0 * s_ze / s0
    h_el = nu0 * s_z2e
    h_ll = (d * (nu0 * c1 + nu0 ** 2 * c2) - nu0 / 2 * s_q + nu0 / 2 * s_z2_d
            + nu0 / 2 * s_z2e)
    hess = np.stack([np.stack([h_mm, h_me, h_ml], 1), np.stack([h_me, h_ee, h_el], 1),
                     np.stack([h_ml, h_el, h_ll], 1)], 1)
    return ll, g, hess


def fit_student_t(x: np.ndarray, n_grid: int = 12, em_iters: int = 10) -> Fit:
    """Student-t MLE per row: a profile over a log grid of df for a start, then per-row Newton.

    The grid (df from 0.5 to 200, EM for loc/scale at each df, warm-started from the previous
    df) picks the basin; Newton on (mu, log s, log df), each row to its own tolerance, finds the
    maximum in it. df is kept in LOG_NU_BOUNDS: rows lighter-tailed than a Gaussian have their
    MLE at df = inf and stop at the upper bound, a Gaussian to ~1e-7 nats per weight.
    Returns loc, scale, df, loglik, n_iter, converged (each (G,)).
    """
    x = as_rows(x)
    g_rows = x.shape[0]
    y, med, sd = standardize(x)  # (G, D), (G, 1), (G, 1)
    mad = np.median(np.abs(y), axis=1, keepdims=True) * 1.4826  # robust start; 0 if ties
    mu, s2 = np.zeros((g_rows, 1)), np.where(mad > 0, mad, 1.0) ** 2
    best_ll = np.full(g_rows, -np.inf)
    best = np.zeros((g_rows, 3))
    for nu_v in np.exp(np.linspace(np.log(0.5), np.log(200.0), n_grid)):
        mu, s2 = _t_em(y, nu_v, mu, s2, em_iters)
        ll = _t_loglik(y, mu, 0.5 * np.log(s2), np.full_like(mu, nu_v))
        upd = ll > best_ll
        best_ll[upd] = ll[upd]
        best[upd] = np.concatenate([mu, 0.5 * np.log(s2), np.full_like(mu, np.log(nu_v))], 1)[upd]

    best[:, 2] = np.clip(best[:, 2], *LOG_NU_BOUNDS)
    r = newton_rows(y, best, _t_ll_grad_hess, _t_ll,
                     np.array([-np.inf, -np.inf, LOG_NU_BOUNDS[0]]),
                     np.array([np.inf, np.inf, LOG_NU_BOUNDS[1]]))
    th = r["theta"]
    mu_x, log_s_x = med[:, 0] + sd[:, 0] * th[:, 0], np.log(sd[:, 0]) + th[:, 1]
    nu = np.exp(th[:, 2])
    ll = _t_loglik(x, mu_x[:, None], log_s_x[:, None], nu[:, None])
    return {"loc": mu_x, "scale": np.exp(log_s_x), "df": nu, "loglik": ll,
            "n_iter": r["n_iter"], "converged": r["converged"]}



def logpdf(x: np.ndarray, fit: Fit) -> np.ndarray:
    """Log-density of each row's fitted Student-t at x (R, n)."""
    nu, s = fit["df"][:, None], fit["scale"][:, None]
    z = (x - fit["loc"][:, None]) / s
    return _t_const(nu) - np.log(s) - (nu + 1) / 2 * np.log1p(z * z / nu)


def log_cdf_sf(x: np.ndarray, fit: Fit) -> tuple[np.ndarray, np.ndarray]:
    """log F and log(1 - F) at x (R, n).

    The law is symmetric: one stdtr call for the tail probability beyond |z| (accurate), the
    other side as its complement; floored at 1e-300 where stdtr underflows.
    """
    z = (x - fit["loc"][:, None]) / fit["scale"][:, None]
    tail = np.maximum(special.stdtr(fit["df"][:, None], -np.abs(z)), 1e-300)
    lt, lc = np.log(tail), np.log1p(-tail)
    return np.where(z < 0, lt, lc), np.where(z < 0, lc, lt)


FAMILY = Family("student_t", 3, fit_student_t, logpdf, log_cdf_sf,
                extra=("df", "n_iter", "converged"), max_tie_frac=MAX_TIE_FRAC)
