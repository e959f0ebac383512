"""Asymmetric Laplace (ALD) maximum likelihood and honest comparison with other families.

All fits are vectorized over the rows of a (C, D) weight matrix (one row = one class).
Conventions are scipy's: `scipy.stats.laplace_asymmetric(kappa, loc, scale)` is the fitted law.

ALD MLE. With a(t) = mean((x-t)+), b(t) = mean((t-x)+), maximizing the log-likelihood over scale
and kappa in closed form gives kappa = (b/a)^(1/4), scale = (ab)^(1/4) (sqrt(a) + sqrt(b)) and a
profile log-likelihood per observation of -2 log(sqrt(a) + sqrt(b)) - 1. sqrt(a) + sqrt(b) is
concave between sample points, so the best location is one of the sorted weights: one sort and
two cumulative sums per row give the exact global MLE.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, special, stats

from .io import FclensError

FAMILIES = ("ald", "gaussian", "laplace", "student_t", "logistic")
N_PARAMS = {"ald": 3, "gaussian": 2, "laplace": 2, "student_t": 3, "logistic": 2}

# statuses of an ALD fit
OK, BOUNDARY_RIGHT, BOUNDARY_LEFT = "ok", "boundary_exp_right", "boundary_exp_left"
CONSTANT, TOO_FEW, NONFINITE = "constant", "too_few", "nonfinite"
DEGENERATE = (CONSTANT, TOO_FEW, NONFINITE)


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


def fit_ald(x: np.ndarray) -> dict[str, np.ndarray]:
    """Exact ALD MLE per row of x (C, D). Returns loc, scale, kappa, loglik, status (each (C,)).

    Boundary rows (best location at the smallest/largest weight: one side empty) are the limit
    kappa -> 0 / inf, a shifted exponential; they get status boundary_exp_right/left, kappa 0/inf,
    loc at the end point and `scale` = the exponential's mean, with its (finite) log-likelihood.
    """
    x = np.asarray(x, dtype=np.float64)
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


# ---------------------------------------------------------------- other families (MLE, vectorized)

def fit_gaussian(x: np.ndarray) -> dict[str, np.ndarray]:
    mu, sd = x.mean(1), x.std(1)
    return {"loc": mu, "scale": sd, "loglik": stats.norm.logpdf(x, mu[:, None], sd[:, None]).sum(1)}


def fit_laplace(x: np.ndarray) -> dict[str, np.ndarray]:
    med = np.median(x, axis=1)
    s = np.abs(x - med[:, None]).mean(1)
    return {"loc": med, "scale": s, "loglik": -x.shape[1] * (np.log(2 * s) + 1)}


def _joint_lbfgs(nll_grad, theta0: np.ndarray, maxiter: int = 5000) -> np.ndarray:
    """Minimize a sum of independent per-row NLLs jointly; rows share nothing but the optimizer.

    One L-BFGS run over all (C, P) parameters replaces C scipy fits (~50 ms each for D = 1280).
    """
    shape = theta0.shape

    def f(flat):
        val, g = nll_grad(flat.reshape(shape))
        return val.sum(), g.reshape(-1)

    res = optimize.minimize(f, theta0.reshape(-1), jac=True, method="L-BFGS-B",
                            options=dict(maxiter=maxiter, maxcor=30, ftol=1e-15, gtol=1e-9))
    return res.x.reshape(shape)


def fit_logistic(x: np.ndarray) -> dict[str, np.ndarray]:
    d = x.shape[1]
    sd = x.std(1)

    def nll_grad(th):
        mu, logs = th[:, :1], th[:, 1:2]
        s = np.exp(logs)
        z = (x - mu) / s
        # -log pdf = z + log s + 2 log(1 + e^-z) = log s + 2 logaddexp(0, -z) + z ... stable form:
        val = (d * logs[:, 0] + (np.logaddexp(0, -z) * 2 + z).sum(1))
        t = np.tanh(z / 2)  # d(-logpdf)/dz = tanh(z/2)
        g_mu = (-t / s).sum(1)
        g_logs = d - (t * z).sum(1)
        return val, np.stack([g_mu, g_logs], 1)

    th = _joint_lbfgs(nll_grad, np.stack([np.median(x, 1), np.log(sd * np.sqrt(3) / np.pi)], 1))
    mu, s = th[:, 0], np.exp(th[:, 1])
    return {"loc": mu, "scale": s,
            "loglik": stats.logistic.logpdf(x, mu[:, None], s[:, None]).sum(1)}


def _t_em(x: np.ndarray, nu: np.ndarray, mu: np.ndarray, s2: np.ndarray, iters: int
          ) -> tuple[np.ndarray, np.ndarray]:
    """EM for Student-t location/scale at fixed df, vectorized over rows (all (C, 1))."""
    for _ in range(iters):
        r = x - mu
        w = (nu + 1) / (nu + r * r / s2)
        mu = (w * x).sum(1, keepdims=True) / w.sum(1, keepdims=True)
        s2 = (w * (x - mu) ** 2).mean(1, keepdims=True)
    return mu, s2


def fit_student_t(x: np.ndarray) -> dict[str, np.ndarray]:
    """Student-t MLE per row: profile over a log grid of df (EM for loc/scale at each df), then
    a joint L-BFGS polish of all three parameters from the best grid point.

    A cold joint L-BFGS over 1000 rows took ~7 min on a 2-core CPU (43 s per 100 rows); the
    grid start brings the polish to a few iterations. On the Lite0 rows the result is within
    0.01 nats of scipy's per-row `t.fit` (the df direction is flat), far below AIC gaps.
    """
    d = x.shape[1]
    med = np.median(x, 1, keepdims=True)
    s2_0 = (np.median(np.abs(x - med), 1, keepdims=True) * 1.4826) ** 2
    best_ll = np.full(x.shape[0], -np.inf)
    best = np.zeros((x.shape[0], 3))
    for nu_v in np.exp(np.linspace(np.log(0.5), np.log(200.0), 24)):
        nu = np.full_like(med, nu_v)
        mu, s2 = _t_em(x, nu, med, s2_0, 25)
        ll = stats.t.logpdf(x, nu_v, mu, np.sqrt(s2)).sum(1)
        upd = ll > best_ll
        best_ll[upd] = ll[upd]
        best[upd] = np.stack([mu[:, 0], 0.5 * np.log(s2[:, 0]), np.full(len(mu), np.log(nu_v))],
                             1)[upd]

    def nll_grad(th):
        mu, logs, lognu = th[:, :1], th[:, 1:2], np.clip(th[:, 2:3], -3, 12)
        s, nu = np.exp(logs), np.exp(lognu)
        z = (x - mu) / s
        q = np.log1p(z * z / nu)
        c = (special.gammaln((nu + 1) / 2) - special.gammaln(nu / 2) - 0.5 * np.log(nu * np.pi)
             - logs)
        val = -(d * c[:, 0] - ((nu + 1) / 2 * q).sum(1))
        w = (nu + 1) / (nu + z * z)  # EM weights
        g_mu = -(w * z / s).sum(1)
        g_logs = d - (w * z * z).sum(1)
        dc_dnu = 0.5 * special.digamma((nu + 1) / 2) - 0.5 * special.digamma(nu / 2) - 0.5 / nu
        dq_dnu = -(z * z) / (nu * (nu + z * z))
        g_nu = -(d * dc_dnu[:, 0] - (0.5 * q + (nu + 1) / 2 * dq_dnu).sum(1))
        return val, np.stack([g_mu, g_logs, g_nu * nu[:, 0]], 1)

    th = _joint_lbfgs(nll_grad, best, maxiter=300)
    mu, s, nu = th[:, 0], np.exp(th[:, 1]), np.exp(np.clip(th[:, 2], -3, 12))
    ll = stats.t.logpdf(x, nu[:, None], mu[:, None], s[:, None]).sum(1)
    worse = ~(ll >= best_ll)  # keep the grid point where the polish did not help
    if worse.any():
        mu[worse], s[worse] = best[worse, 0], np.exp(best[worse, 1])
        nu[worse], ll[worse] = np.exp(best[worse, 2]), best_ll[worse]
    return {"loc": mu, "scale": s, "df": nu, "loglik": ll}


# ---------------------------------------------------------------- goodness of fit

def _cdf(family: str, fit: dict, xs: np.ndarray) -> np.ndarray:
    loc, scale = fit["loc"][:, None], fit["scale"][:, None]
    if family == "gaussian":
        return stats.norm.cdf(xs, loc, scale)
    if family == "laplace":
        return stats.laplace.cdf(xs, loc, scale)
    if family == "logistic":
        return stats.logistic.cdf(xs, loc, scale)
    if family == "student_t":
        return stats.t.cdf(xs, fit["df"][:, None], loc, scale)
    k = fit["kappa"][:, None]
    z = (xs - loc) / scale
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # scipy's ALD cdf, with its kappa -> 0 / inf limits (shifted exponentials) kept finite
        below = np.where(np.isinf(k), np.exp(np.minimum(z, 0)), k * k / (1 + k * k) * np.exp(z / k))
        above = np.where(k == 0, -np.expm1(-np.maximum(z, 0)), 1 - np.exp(-k * z) / (1 + k * k))
        return np.where(z < 0, np.where(k == 0, 0.0, below), above)


def ks_ad(family: str, fit: dict, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kolmogorov-Smirnov and Anderson-Darling statistics per row (fitted parameters)."""
    xs = np.sort(x, 1)
    n = xs.shape[1]
    f = np.clip(_cdf(family, fit, xs), 1e-300, 1 - 1e-16)
    i = np.arange(1, n + 1)
    ks = np.maximum((i / n - f).max(1), (f - (i - 1) / n).max(1))
    ad = -n - ((2 * i - 1) * (np.log(f) + np.log1p(-f[:, ::-1]))).sum(1) / n
    return ks, ad


def r2_log_sorted_abs(x: np.ndarray) -> np.ndarray:
    """The blog's criterion: R^2 of a line through log(sorted |w|) against rank."""
    y = np.log(np.maximum(np.sort(np.abs(x), 1)[:, ::-1], 1e-12))  # (C, D) descending
    r = np.arange(x.shape[1], dtype=np.float64)
    rc = r - r.mean()
    yc = y - y.mean(1, keepdims=True)
    return (yc @ rc) ** 2 / ((rc @ rc) * (yc * yc).sum(1))


def compare_families(w: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Fit every family to every non-degenerate row; AIC, BIC, KS, AD, LR test ALD vs Laplace.

    Degenerate rows get NaN everywhere; `status` says why.
    """
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2:
        raise FclensError(f"weights must be a (C, D) matrix, got shape {w.shape}")
    c, d = w.shape
    ald = fit_ald(w)
    good = np.array([s not in DEGENERATE for s in ald["status"]])
    xg = w[good]
    fits = {"ald": {k: v[good] for k, v in ald.items() if k != "status"}}
    if good.any():
        fits.update(gaussian=fit_gaussian(xg), laplace=fit_laplace(xg),
                    student_t=fit_student_t(xg), logistic=fit_logistic(xg))
    res: dict[str, dict[str, np.ndarray]] = {}
    for fam in FAMILIES:
        r = {k: np.full(c, np.nan) for k in ("loglik", "aic", "bic", "ks", "ad")}
        if good.any():
            f = fits[fam]
            r["loglik"][good] = f["loglik"]
            r["aic"][good] = 2 * N_PARAMS[fam] - 2 * f["loglik"]
            r["bic"][good] = N_PARAMS[fam] * np.log(d) - 2 * f["loglik"]
            r["ks"][good], r["ad"][good] = ks_ad(fam, f, xg)
            for k in ("loc", "scale", "df"):
                if k in f:
                    r[k] = np.full(c, np.nan)
                    r[k][good] = f[k]
        res[fam] = r
    lr = 2 * (res["ald"]["loglik"] - res["laplace"]["loglik"])
    res["lr_test"] = {"stat": lr, "pvalue": stats.chi2.sf(np.maximum(lr, 0), df=1)}
    res["r2_line"] = {"r2": np.where(good, r2_log_sorted_abs(np.nan_to_num(w)), np.nan)}
    res["ald_fit"] = ald
    return res
