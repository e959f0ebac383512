"""Asymmetric Laplace (ALD) maximum likelihood and honest comparison with other families.

All fits are vectorized over the rows of a (C, D) weight matrix (one row = one class).
Conventions are scipy's: `scipy.stats.laplace_asymmetric(kappa, loc, scale)` is the fitted law.

ALD MLE. With a(t) = mean((x-t)+), b(t) = mean((t-x)+), maximizing the log-likelihood over scale
and kappa in closed form gives kappa = (b/a)^(1/4), scale = (ab)^(1/4) (sqrt(a) + sqrt(b)) and a
profile log-likelihood per observation of -2 log(sqrt(a) + sqrt(b)) - 1. sqrt(a) + sqrt(b) is
concave between sample points, so the best location is one of the sorted weights: one sort and
two cumulative sums per row give the exact global MLE.

Determinism. A row's fit, statistics and summary must not depend on the other rows, the batch
shape, the thread count or the BLAS library: the published metrics (best-family counts, medians to
4 digits) are compared across machines. So every computation here is elementwise or a reduction
along axis 1 of a C-contiguous (G, D) array (numpy sums each row on its own, pairwise), never a
matmul or a solve across rows. The iterative fits (Student-t, logistic) are per-row Newton
solvers: each row stops at its own tolerance and is then frozen, so its iterates are the same
whether it is fitted alone or among 1000 rows (tests/test_ald.py checks bit equality). Another
CPU can still differ in the last bits of exp/log (numpy's AVX2 and AVX-512 loops do); the
solvers end with one quadratic-regime Newton step and best_family treats AIC differences below
AIC_TIE_REL * n as ties, so such bits stay out of the rounded metrics (also tested).
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats

from fclens.core.constants import ALD_FAMILIES as FAMILIES
from fclens.core.errors import FclensError

N_PARAMS = {"ald": 3, "gaussian": 2, "laplace": 2, "student_t": 3, "logistic": 2}
# AIC differences below AIC_TIE_REL * n (n = weights per row) are ties: a loglik is a sum of n
# terms, so its rounding error (and a tolerance-stopped optimizer's error) grows with n
AIC_TIE_REL = 1e-6

# statuses of an ALD fit
OK, BOUNDARY_RIGHT, BOUNDARY_LEFT = "ok", "boundary_exp_right", "boundary_exp_left"
CONSTANT, TOO_FEW, NONFINITE = "constant", "too_few", "nonfinite"
TIES = "ties"  # compare_families only: >= 2 weights at one value (e.g. 0), > MAX_TIE_FRAC of them
DEGENERATE = (CONSTANT, TOO_FEW, NONFINITE, TIES)

# per-row Newton: stop when the predicted gain g^T (-H)^-1 g / 2 is below NEWTON_TOL nats (the
# step before it, quadratically convergent, left the loglik ~1e-9 nats or less from its maximum)
NEWTON_TOL = 1e-10
NEWTON_MAXITER = 100
# Student-t df in [0.05, 1.6e5]; at 1.6e5 it is a Gaussian to ~1e-7 nats per weight
LOG_NU_BOUNDS = (-3.0, 12.0)
# With k of n weights at one value, the Student-t loglik near scale s -> 0 (loc at that value)
# goes as ((n - k) df - k) log s: unbounded, so no t MLE exists, once k/n > df/(1 + df) at the
# smallest df allowed. Such rows (pruned or zero-initialised heads) hold a point mass that no
# continuous family fits, and the five-family comparison leaves them out.
MAX_TIE_FRAC = float(np.exp(LOG_NU_BOUNDS[0]) / (1 + np.exp(LOG_NU_BOUNDS[0])))


def _rows(x: np.ndarray, what: str = "weights") -> np.ndarray:
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
    xs = np.sort(_rows(x), axis=1)  # (C, D)
    c, d = xs.shape
    new = np.ones(xs.shape, bool)
    new[:, 1:] = xs[:, 1:] != xs[:, :-1]  # a run of equal values starts here
    run = np.cumsum(new, axis=1) - 1 + d * np.arange(c)[:, None]  # run ids, distinct per row
    return np.bincount(run.ravel(), minlength=c * d).reshape(c, d).max(1)


def fit_ald(x: np.ndarray) -> dict[str, np.ndarray]:
    """Exact ALD MLE per row of x (C, D). Returns loc, scale, kappa, loglik, status (each (C,)).

    Boundary rows (best location at the smallest/largest weight: one side empty) are the limit
    kappa -> 0 / inf, a shifted exponential; they get status boundary_exp_right/left, kappa 0/inf,
    loc at the end point and `scale` = the exponential's mean, with its (finite) log-likelihood.
    """
    x = _rows(x)
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
    """Gaussian MLE per row; the maximized loglik in closed form (sum of z^2 is exactly n)."""
    x = _rows(x)
    mu, sd = x.mean(1), x.std(1)
    return {"loc": mu, "scale": sd,
            "loglik": -0.5 * x.shape[1] * (np.log(2 * np.pi) + 2 * np.log(sd) + 1)}


def fit_laplace(x: np.ndarray) -> dict[str, np.ndarray]:
    """Laplace MLE per row: the median and the mean absolute deviation from it."""
    x = _rows(x)
    med = np.median(x, axis=1)
    s = np.abs(x - med[:, None]).mean(1)
    return {"loc": med, "scale": s, "loglik": -x.shape[1] * (np.log(2 * s) + 1)}


def _chol_solve(m: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solve m x = g for a stack of small SPD matrices m (G, P, P), g (G, P), elementwise.

    Hand-written so that no LAPACK/BLAS call sees more than one row. Returns x (G, P) and ok
    (G,): False where a pivot was not positive (m not positive definite; x is then garbage).
    """
    p = g.shape[1]
    lo = np.zeros_like(m)  # (G, P, P) lower Cholesky factor
    ok = np.ones(g.shape[0], bool)
    for j in range(p):
        s = m[:, j, j].copy()
        for k in range(j):
            s -= lo[:, j, k] * lo[:, j, k]
        ok &= s > 0  # NaN fails too
        lo[:, j, j] = np.sqrt(np.where(s > 0, s, 1.0))
        for i in range(j + 1, p):
            t = m[:, i, j].copy()
            for k in range(j):
                t -= lo[:, i, k] * lo[:, j, k]
            lo[:, i, j] = t / lo[:, j, j]
    u = np.zeros_like(g)  # (G, P): lo u = g, then lo^T x = u
    for i in range(p):
        t = g[:, i].copy()
        for k in range(i):
            t -= lo[:, i, k] * u[:, k]
        u[:, i] = t / lo[:, i, i]
    x = np.zeros_like(g)
    for i in reversed(range(p)):
        t = u[:, i].copy()
        for k in range(i + 1, p):
            t -= lo[:, k, i] * x[:, k]
        x[:, i] = t / lo[:, i, i]
    return x, ok


def _newton_rows(y: np.ndarray, theta: np.ndarray, ll_grad_hess, ll_only,
                 lo: np.ndarray, hi: np.ndarray) -> dict[str, np.ndarray]:
    """Maximize independent per-row logliks by projected Newton, each row to its own tolerance.

    y (G, D) data, theta (G, P) start, lo/hi (P,) box bounds. ll_grad_hess(y, th) -> ll (G,),
    g (G, P), H (G, P, P); ll_only(y, th) -> ll (G,) (-inf or NaN outside the domain).
    A parameter at a bound whose gradient points outward is held there (projected Newton).
    Where -H is not positive definite it is shifted by tau * I (tau grown x10 until it is), so
    the step always ascends; a backtracking line search (Armijo) makes every accepted step raise
    the loglik (except in the quadratic regime, see below). A row stops when the predicted gain
    of an unshifted Newton step is < NEWTON_TOL (converged), or when no step length raises its
    loglik or after NEWTON_MAXITER steps (not converged).
    Rows never interact: the active rows are gathered, updated and scattered back each step.
    """
    theta = np.array(theta, dtype=np.float64)  # (G, P)
    g_rows, p = theta.shape
    n_iter = np.zeros(g_rows, np.int64)
    converged = np.zeros(g_rows, bool)
    ll = np.full(g_rows, np.nan)
    active = np.arange(g_rows)
    eye = np.eye(p)
    for _ in range(NEWTON_MAXITER + 1):
        if not active.size:
            break
        ya, th = y[active], theta[active]  # (A, D), (A, P)
        lla, g, h = ll_grad_hess(ya, th)
        ll[active] = lla
        held = ((th <= lo) & (g < 0)) | ((th >= hi) & (g > 0))  # (A, P)
        g = np.where(held, 0.0, g)
        m = -h
        m = np.where(held[:, :, None] | held[:, None, :], 0.0, m) + held[:, :, None] * eye
        step, ok = _chol_solve(m, g)  # (A, P), (A,)
        shifted = ~ok
        scale = np.maximum(np.abs(np.diagonal(m, axis1=1, axis2=2)).max(1), 1e-12)  # (A,)
        tau = 1e-8 * scale
        for _ in range(40):  # shift until positive definite (only the rows that need it)
            bad = np.flatnonzero(~ok)
            if not bad.size:
                break
            step[bad], ok[bad] = _chol_solve(m[bad] + tau[bad, None, None] * eye, g[bad])
            tau[bad] *= 10
        gain = 0.5 * (g * step).sum(1)  # (A,) predicted gain of the full step
        done = ~shifted & (gain < NEWTON_TOL)
        converged[active[done]] = True
        # the last (tiny, quadratic-regime) step is still taken: it brings the parameters from
        # ~sqrt(NEWTON_TOL) to the gradient's rounding noise, so last-bit differences of exp/log
        # between CPUs (numpy's AVX2 vs AVX-512 loops) barely move the result
        theta[active[done]] = np.clip(th[done] + step[done], lo, hi)
        stop = done | ~ok | (n_iter[active] >= NEWTON_MAXITER)
        keep = ~stop
        act, th, step, g, lla, gain, shifted = (active[keep], th[keep], step[keep], g[keep],
                                                lla[keep], gain[keep], shifted[keep])
        # Backtracking line search on the rows still moving. In the quadratic regime (unshifted
        # step, predicted gain < 1e-6 nats) the full step is taken as it is: there the change
        # in loglik is comparable to its rounding noise (n * lgamma(nu/2) * eps), and Armijo
        # would reject a good step on noise.
        alpha = np.ones(len(act))
        new = np.clip(th + step, lo, hi)
        pending = np.flatnonzero(shifted | (gain >= 1e-6))
        failed = np.zeros(len(act), bool)
        for _ in range(40):
            if not pending.size:
                break
            cand = np.clip(th[pending] + alpha[pending, None] * step[pending], lo, hi)
            ll_new = ll_only(y[act[pending]], cand)
            slope = (g[pending] * (cand - th[pending])).sum(1)
            moves = (cand != th[pending]).any(1)
            good = (ll_new >= lla[pending] + 1e-4 * slope) & moves  # NaN / -inf fail
            new[pending[good]] = cand[good]
            failed[pending[~moves]] = True
            alpha[pending[~good]] *= 0.5
            pending = pending[~good & moves]
        failed[pending] = True  # no step length raises the loglik: stop, not converged
        theta[act[~failed]] = new[~failed]
        n_iter[act[~failed]] += 1
        active = act[~failed]
    return {"theta": theta, "loglik": ll, "n_iter": n_iter, "converged": converged}


def _standardize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x - median) / std per row, so that the solvers' tolerances mean the same on every row."""
    med = np.median(x, axis=1, keepdims=True)  # (G, 1)
    sd = x.std(1, keepdims=True)  # (G, 1)
    return (x - med) / sd, med, sd


def _logistic_logpdf_sum(x: np.ndarray, mu: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Sum over axis 1 of the logistic log-density; mu, s (G, 1)."""
    z = np.abs((x - mu) / s)
    return (-z - 2 * np.log1p(np.exp(-z))).sum(1) - x.shape[1] * np.log(s[:, 0])


def _logistic_ll(y: np.ndarray, th: np.ndarray) -> np.ndarray:
    """Logistic loglik per row of standardized y (G, D) at th = (a, b) (G, 2); -inf if b <= 0."""
    n = y.shape[1]
    a, b = th[:, :1], th[:, 1:2]
    z = np.abs(b * y - a)
    with np.errstate(divide="ignore", invalid="ignore"):
        val = n * np.log(b[:, 0]) + (-z - 2 * np.log1p(np.exp(-z))).sum(1)
    return np.where(b[:, 0] > 0, val, -np.inf)


def _logistic_ll_grad_hess(y: np.ndarray, th: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Loglik (G,), gradient (G, 2) and Hessian (G, 2, 2) in (a, b); see fit_logistic."""
    n = y.shape[1]
    a, b = th[:, :1], th[:, 1:2]  # (G, 1)
    z = b * y - a  # (G, D)
    t = np.tanh(z / 2)  # -d log f / dz
    h = -0.5 * (1 - t * t)  # d2 log f / dz2
    az = np.abs(z)
    ll = n * np.log(b[:, 0]) + (-az - 2 * np.log1p(np.exp(-az))).sum(1)
    hy = h * y
    g = np.stack([t.sum(1), n / b[:, 0] - (t * y).sum(1)], 1)
    h_ab = -hy.sum(1)
    hess = np.stack([np.stack([h.sum(1), h_ab], 1),
                     np.stack([h_ab, -n / b[:, 0] ** 2 + (hy * y).sum(1)], 1)], 1)
    return ll, g, hess


def fit_logistic(x: np.ndarray) -> dict[str, np.ndarray]:
    """Logistic MLE per row by Newton in (a, b) = (mu/s, 1/s), where the loglik is concave.

    With z = b y - a the loglik is n log b + sum log f(z) and log f is concave, so Newton with a
    line search from any start reaches the global maximum (in ~6 steps from mu = median,
    s = std * sqrt(3) / pi). Returns loc, scale, loglik, n_iter, converged (each (G,)).
    """
    x = _rows(x)
    y, med, sd = _standardize(x)  # (G, D), (G, 1), (G, 1)
    th0 = np.stack([np.zeros(len(x)), np.full(len(x), np.pi / np.sqrt(3))], 1)
    r = _newton_rows(y, th0, _logistic_ll_grad_hess, _logistic_ll, np.array([-np.inf, 0.0]),
                     np.array([np.inf, np.inf]))
    a, b = r["theta"][:, 0], r["theta"][:, 1]
    mu, s = med[:, 0] + sd[:, 0] * a / b, sd[:, 0] / b
    return {"loc": mu, "scale": s, "loglik": _logistic_logpdf_sum(x, mu[:, None], s[:, None]),
            "n_iter": r["n_iter"], "converged": r["converged"]}


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


def fit_student_t(x: np.ndarray, n_grid: int = 12, em_iters: int = 10) -> dict[str, np.ndarray]:
    """Student-t MLE per row: a profile over a log grid of df for a start, then per-row Newton.

    The grid (df from 0.5 to 200, EM for loc/scale at each df, warm-started from the previous
    df) picks the basin; Newton on (mu, log s, log df), each row to its own tolerance, finds the
    maximum in it. df is kept in LOG_NU_BOUNDS: rows lighter-tailed than a Gaussian have their
    MLE at df = inf and stop at the upper bound, a Gaussian to ~1e-7 nats per weight.
    Returns loc, scale, df, loglik, n_iter, converged (each (G,)).
    """
    x = _rows(x)
    g_rows = x.shape[0]
    y, med, sd = _standardize(x)  # (G, D), (G, 1), (G, 1)
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
    r = _newton_rows(y, best, _t_ll_grad_hess, _t_ll,
                     np.array([-np.inf, -np.inf, LOG_NU_BOUNDS[0]]),
                     np.array([np.inf, np.inf, LOG_NU_BOUNDS[1]]))
    th = r["theta"]
    mu_x, log_s_x = med[:, 0] + sd[:, 0] * th[:, 0], np.log(sd[:, 0]) + th[:, 1]
    nu = np.exp(th[:, 2])
    ll = _t_loglik(x, mu_x[:, None], log_s_x[:, None], nu[:, None])
    return {"loc": mu_x, "scale": np.exp(log_s_x), "df": nu, "loglik": ll,
            "n_iter": r["n_iter"], "converged": r["converged"]}


# ---------------------------------------------------------------- goodness of fit

def _log1mexp(a: np.ndarray) -> np.ndarray:
    """log(1 - exp(a)) for a <= 0, accurate at both ends (-inf at a = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a > -np.log(2), np.log(-np.expm1(a)), np.log1p(-np.exp(a)))


def _log_cdf_sf(family: str, fit: dict, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log F and log(1 - F) of the fitted law at xs (G, n), each accurate in its own tail.

    Exact -inf only at an end of a finite support: the end point of a boundary ALD fit (a shifted
    exponential whose location is that sample point).
    """
    loc, scale = fit["loc"][:, None], fit["scale"][:, None]
    z = (xs - loc) / scale
    if family == "gaussian":
        return special.log_ndtr(z), special.log_ndtr(-z)
    if family == "logistic":
        return special.log_expit(z), special.log_expit(-z)
    if family == "laplace":
        lf = np.where(z < 0, np.log(0.5) + np.minimum(z, 0), _log1mexp(np.log(0.5) - np.abs(z)))
        ls = np.where(z > 0, np.log(0.5) - np.maximum(z, 0), _log1mexp(np.log(0.5) - np.abs(z)))
        return lf, ls
    if family == "student_t":
        # symmetric law: one stdtr call for the tail probability beyond |z| (accurate), the
        # other side as its complement; floored at 1e-300 where stdtr underflows
        tail = np.maximum(special.stdtr(fit["df"][:, None], -np.abs(z)), 1e-300)
        lt, lc = np.log(tail), np.log1p(-tail)
        return np.where(z < 0, lt, lc), np.where(z < 0, lc, lt)
    if family != "ald":
        raise FclensError(f"unknown family {family!r}; expected one of {FAMILIES}")
    k = fit["kappa"][:, None]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # interior kappa: F = k^2/(1+k^2) e^(z/k) below loc, 1 - F = e^(-kz)/(1+k^2) above
        lf_below = np.log(k * k / (1 + k * k)) + z / k
        ls_above = -k * z - np.log1p(k * k)
        lf = np.where(z < 0, lf_below, _log1mexp(np.minimum(ls_above, 0)))
        ls = np.where(z < 0, _log1mexp(np.minimum(lf_below, 0)), ls_above)
        # kappa = 0: exponential to the right of loc; kappa = inf: to the left
        right, left = k == 0, np.isinf(k)
        lf = np.where(right, np.where(z < 0, -np.inf, _log1mexp(-np.maximum(z, 0))), lf)
        ls = np.where(right, np.where(z < 0, 0.0, -np.maximum(z, 0)), ls)
        lf = np.where(left, np.where(z > 0, 0.0, np.minimum(z, 0)), lf)
        ls = np.where(left, np.where(z > 0, -np.inf, _log1mexp(np.minimum(z, 0))), ls)
    return lf, ls


def ald_log_tails(x: np.ndarray, loc: np.ndarray, scale: np.ndarray, kappa: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """log P(X <= x) and log P(X >= x) of each row's fitted ALD at x (G, n), each accurate in
    its own tail; boundary fits (kappa 0 / inf) included, NaN for a row without a fit."""
    return _log_cdf_sf("ald", {"loc": np.asarray(loc, np.float64),
                               "scale": np.asarray(scale, np.float64),
                               "kappa": np.asarray(kappa, np.float64)},
                       np.asarray(x, np.float64))


def _cdf(family: str, fit: dict, xs: np.ndarray) -> np.ndarray:
    """Fitted cdf at xs (G, n); finite for every fit, boundary ALD fits (kappa 0 / inf) included."""
    return np.exp(_log_cdf_sf(family, fit, xs)[0])


def ks_ad(family: str, fit: dict, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kolmogorov-Smirnov and Anderson-Darling statistics per row (fitted parameters).

    KS uses every point. AD weighs each point by 1 / (F (1 - F)), so it is infinite at a point on
    an end of the fitted law's support. That happens only for boundary ALD fits (kappa 0 / inf):
    the fitted shifted exponential starts exactly at the sample's end point, because that point
    *is* the location estimate (like the threshold of a 3-parameter exponential). Clipping F
    there (the old behaviour) made AD ~2400, a number set by the clip constant, not by the data.
    Instead AD of a boundary fit is computed over the m points strictly inside the support (all
    but the end point and any ties with it), with m in place of n: by memorylessness, if the
    model holds, the other points' distances from the end point are an i.i.d. sample of the
    fitted exponential, so this AD tests exactly the fitted law. Ties at the end point are a
    misfit (a continuous law gives them probability 0); AD does not see them, KS does.
    Returns ks, ad (each (G,)).
    """
    xs = np.sort(_rows(x), 1)  # (G, n)
    n = xs.shape[1]
    lf, ls = _log_cdf_sf(family, fit, xs)
    f = np.exp(lf)
    i = np.arange(1, n + 1)
    ks = np.maximum((i / n - f).max(1), (f - (i - 1) / n).max(1))
    inside = np.isfinite(lf) & np.isfinite(ls)  # (G, n): a contiguous block of the sorted points
    m = inside.sum(1)  # (G,)
    ii = np.arange(n) - np.argmax(inside, 1)[:, None] + 1  # rank within the block
    # A^2 = -m - (1/m) sum_i [(2i - 1) log F_i + (2(m - i) + 1) log(1 - F_i)]
    with np.errstate(invalid="ignore"):
        terms = np.where(inside, (2 * ii - 1) * lf + (2 * (m[:, None] - ii) + 1) * ls, 0.0)
    ad = -m - terms.sum(1) / m
    return ks, ad


def r2_log_sorted_abs(x: np.ndarray) -> np.ndarray:
    """The blog's criterion: R^2 of a line through log(sorted |w|) against rank.

    Elementwise products and row sums, no matmul: a BLAS dot's rounding depends on the batch.
    """
    x = _rows(x)
    y = np.log(np.maximum(-np.sort(-np.abs(x), 1), 1e-12))  # (C, D) descending
    r = np.arange(x.shape[1], dtype=np.float64)
    rc = r - r.mean()  # (D,)
    yc = y - y.mean(1, keepdims=True)  # (C, D)
    return (yc * rc).sum(1) ** 2 / ((rc * rc).sum() * (yc * yc).sum(1))


# ---------------------------------------------------------------- comparison and summary

def _aic_ties(aic: np.ndarray, n: int) -> np.ndarray:
    """(C, F) bool: families whose AIC is within AIC_TIE_REL * n of the row's lowest."""
    aic = np.asarray(aic, dtype=np.float64)
    if aic.ndim != 2 or aic.shape[1] == 0:
        raise FclensError(f"aic must be a (C, F) matrix with F >= 1 families, got shape "
                          f"{aic.shape}")
    if not (isinstance(n, int | np.integer) and n >= 1):
        raise FclensError(f"n (weights per row) must be a positive integer, got {n!r}")
    a = np.where(np.isnan(aic), np.inf, aic)
    lowest = a.min(1, keepdims=True)  # (C, 1)
    with np.errstate(invalid="ignore"):
        return np.isfinite(a) & (a - lowest < AIC_TIE_REL * n)


def best_family(aic: np.ndarray, n: int) -> np.ndarray:
    """Index of the best family per row of aic (C, F), columns in FAMILIES order; -1 if all NaN.

    AIC differences below AIC_TIE_REL * n count as ties, and a tie goes to the family listed
    first (ald, gaussian, laplace, student_t, logistic). Without the rule a difference in the
    last bits (another machine, another optimizer stop) could flip a row's best family.
    """
    tied = _aic_ties(aic, n)  # (C, F)
    return np.where(tied.any(1), np.argmax(tied, 1), -1)


def compare_families(w: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Fit every family to every non-degenerate row; AIC, BIC, KS, AD, LR test ALD vs Laplace.

    Returns per family (each (C,)): loglik, aic, bic, ks, ad, loc, scale (+ df for student_t,
    n_iter and converged for the Newton-fitted student_t and logistic); lr_test {stat, pvalue};
    r2_line {r2}; ald_fit (fit_ald's output, with status); best {index (FAMILIES index, -1 for
    degenerate rows), n_tied (families within the AIC tie tolerance)}; shape {n_classes,
    feature_dim}. Degenerate rows get NaN (n_iter 0, converged False); `status` says why.
    Every row's numbers are independent of the other rows (see the module docstring).
    """
    w = _rows(w)
    c, d = w.shape
    ald = fit_ald(w)
    k = tie_count(w)  # (C,)
    tied = ~np.isin(ald["status"].astype(str), DEGENERATE) & (k > 1) & (k > MAX_TIE_FRAC * d)
    ald["status"][tied] = TIES
    for k in ("loc", "scale", "kappa", "loglik", "exp_scale"):
        ald[k][tied] = np.nan
    good = ~np.isin(ald["status"].astype(str), DEGENERATE)
    xg = w[good]  # (G, D), C-contiguous
    fits = {"ald": {k: v[good] for k, v in ald.items() if k != "status"}}
    if good.any():
        fits.update(gaussian=fit_gaussian(xg), laplace=fit_laplace(xg),
                    student_t=fit_student_t(xg), logistic=fit_logistic(xg))
    res: dict[str, dict[str, np.ndarray]] = {}
    for fam in FAMILIES:
        r = {k: np.full(c, np.nan) for k in ("loglik", "aic", "bic", "ks", "ad", "loc", "scale")}
        if fam == "student_t":
            r["df"] = np.full(c, np.nan)
        if fam in ("student_t", "logistic"):
            r["n_iter"], r["converged"] = np.zeros(c, np.int64), np.zeros(c, bool)
        if good.any():
            f = fits[fam]
            r["loglik"][good] = f["loglik"]
            r["aic"][good] = 2 * N_PARAMS[fam] - 2 * f["loglik"]
            r["bic"][good] = N_PARAMS[fam] * np.log(d) - 2 * f["loglik"]
            r["ks"][good], r["ad"][good] = ks_ad(fam, f, xg)
            for k in ("loc", "scale", "df", "n_iter", "converged"):
                if k in r:
                    r[k][good] = f[k]
        res[fam] = r
    lr = 2 * (res["ald"]["loglik"] - res["laplace"]["loglik"])
    res["lr_test"] = {"stat": lr, "pvalue": stats.chi2.sf(np.maximum(lr, 0), df=1)}
    r2 = np.full(c, np.nan)
    if good.any():
        r2[good] = r2_log_sorted_abs(xg)
    res["r2_line"] = {"r2": r2}
    res["ald_fit"] = ald
    aic = np.stack([res[f]["aic"] for f in FAMILIES], 1)  # (C, F)
    res["best"] = {"index": best_family(aic, d), "n_tied": _aic_ties(aic, d).sum(1)}
    res["shape"] = {"n_classes": c, "feature_dim": d}
    return res


def summary(res: dict) -> dict:
    """The science metrics of `compare_families(w)`: plain Python numbers, no timing.

    Medians and fractions are over the non-degenerate rows; with none, a FclensError.
    best_family_counts uses best_family's tie rule; n_aic_ties counts the rows where the rule
    decided (two or more families within the tolerance). aic/bic_win_rate[f] is the fraction of
    rows where ALD's criterion is lower than f's by at least the tie tolerance. ad_median_by_family
    uses the boundary-fit AD of `ks_ad` (never NaN for a fitted row). n_not_converged counts the
    rows where a Newton fit stopped without meeting its tolerance (0 expected).
    """
    status = np.asarray(res["ald_fit"]["status"]).astype(str)  # (C,)
    good = ~np.isin(status, DEGENERATE)
    c, d = int(res["shape"]["n_classes"]), int(res["shape"]["feature_dim"])
    tol = AIC_TIE_REL * d
    ng = int(good.sum())
    if ng == 0:  # every median would be NaN: nothing was fitted, so say so instead
        counts = dict(zip(*np.unique(status, return_counts=True)))
        raise FclensError(f"no class's weight row could be fitted ({c} rows of {d} weights; "
                          f"statuses {counts}); expected rows of at least 3 finite, non-constant "
                          f"weights")

    def med(v: np.ndarray) -> float:
        return float(np.median(v[good])) if ng else float("nan")

    def frac(v: np.ndarray) -> float:
        return float(v[good].mean()) if ng else float("nan")

    aic = {f: res[f]["aic"] for f in FAMILIES}
    bic = {f: res[f]["bic"] for f in FAMILIES}
    best = np.asarray(res["best"]["index"])[good]
    kappa = res["ald_fit"]["kappa"]
    names, counts = np.unique(status, return_counts=True)
    return {
        "n_classes": c, "feature_dim": d,
        "kappa_median": med(kappa),
        "frac_kappa_lt_1": frac(kappa < 1),
        "aic_win_rate": {f: frac(aic[f] - aic["ald"] >= tol) for f in FAMILIES if f != "ald"},
        "bic_win_rate": {f: frac(bic[f] - bic["ald"] >= tol) for f in FAMILIES if f != "ald"},
        "best_family_counts": {f: int((best == i).sum()) for i, f in enumerate(FAMILIES)},
        "n_aic_ties": int((np.asarray(res["best"]["n_tied"])[good] > 1).sum()),
        "lr_test_reject_frac": frac(res["lr_test"]["pvalue"] < 0.05),
        "ks_median": med(res["ald"]["ks"]),
        "ks_median_by_family": {f: med(res[f]["ks"]) for f in FAMILIES},
        "ad_median_by_family": {f: med(res[f]["ad"]) for f in FAMILIES},
        "r2_line_median": med(res["r2_line"]["r2"]),
        "n_degenerate": c - ng,
        "status_counts": {str(s): int(k) for s, k in zip(names, counts)},
        "n_boundary": int(np.char.startswith(status, "boundary").sum()),
        "n_not_converged": {f: int((~res[f]["converged"][good]).sum())
                            for f in ("student_t", "logistic")},
    }
