"""The numerics the iterative fits share: a per-row projected Newton solver, its small
elementwise Cholesky solve, and helpers for accurate logs.

Nothing here ever mixes rows (no matmul, no LAPACK call over a batch): see the package
docstring on determinism.
"""

from __future__ import annotations

import numpy as np

# per-row Newton: stop when the predicted gain g^T (-H)^-1 g / 2 is below NEWTON_TOL nats (the
# step before it, quadratically convergent, left the loglik ~1e-9 nats or less from its maximum)
NEWTON_TOL = 1e-10
NEWTON_MAXITER = 100


def chol_solve(m: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def newton_rows(y: np.ndarray, theta: np.ndarray, ll_grad_hess, ll_only,
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
        step, ok = chol_solve(m, g)  # (A, P), (A,)
        shifted = ~ok
        scale = np.maximum(np.abs(np.diagonal(m, axis1=1, axis2=2)).max(1), 1e-12)  # (A,)
        tau = 1e-8 * scale
        for _ in range(40):  # shift until positive definite (only the rows that need it)
            bad = np.flatnonzero(~ok)
            if not bad.size:
                break
            step[bad], ok[bad] = chol_solve(m[bad] + tau[bad, None, None] * eye, g[bad])
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


def standardize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x - median) / std per row, so that the solvers' tolerances mean the same on every row."""
    med = np.median(x, axis=1, keepdims=True)  # (G, 1)
    sd = x.std(1, keepdims=True)  # (G, 1)
    return (x - med) / sd, med, sd


def log1mexp(a: np.ndarray) -> np.ndarray:
    """log(1 - exp(a)) for a <= 0, accurate at both ends (-inf at a = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a > -np.log(2), np.log(-np.expm1(a)), np.log1p(-np.exp(a)))


