"""Honest comparison of the registered families on every row: AIC, BIC, KS, AD, the ALD vs
Laplace likelihood-ratio test, and the summary metrics the fit_ald stage publishes.

Every loop over families reads the registry (`families.FAMILIES`), in its order.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from fclens.analysis.ald.families import FAMILIES
from fclens.analysis.ald.rows import DEGENERATE, OK, TIES, as_rows, row_status, tie_count
from fclens.core.errors import FclensError

# AIC differences below AIC_TIE_REL * n (n = weights per row) are ties: a loglik is a sum of n
# terms, so its rounding error (and a tolerance-stopped optimizer's error) grows with n
AIC_TIE_REL = 1e-6


def ks_ad(family: str, fit: dict, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kolmogorov-Smirnov and Anderson-Darling statistics per row of x (G, n) under the fitted
    law of `family` (a registry name; fit: its (G,) parameters).

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
    xs = np.sort(as_rows(x), 1)  # (G, n)
    n = xs.shape[1]
    lf, ls = FAMILIES[family].log_cdf_sf(xs, fit)
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
    x = as_rows(x)
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
    first in the registry (ald, gaussian, laplace, student_t, logistic). Without the rule a
    difference in the last bits (another machine, another optimizer stop) could flip a row's
    best family.
    """
    tied = _aic_ties(aic, n)  # (C, F)
    return np.where(tied.any(1), np.argmax(tied, 1), -1)




def _scatter(part: np.ndarray, good: np.ndarray) -> np.ndarray:
    """(G,) values of the fitted rows -> (C,), unfitted rows NaN (0 for counts, False for flags)."""
    fill = {"f": np.nan, "i": 0, "u": 0, "b": False}[part.dtype.kind]
    out = np.full(len(good), fill, dtype=part.dtype)
    out[good] = part
    return out


def compare_families(w: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Fit every registered family to every non-degenerate row; AIC, BIC, KS, AD, LR test ALD vs
    Laplace.

    Returns per family (each (C,)): loglik, aic, bic, ks, ad, loc, scale and the family's `extra`
    keys (df, n_iter, converged); lr_test {stat, pvalue}; r2_line {r2}; ald_fit (fit_ald's
    output, with status); best {index (FAMILIES index, -1 for degenerate rows), n_tied (families
    within the AIC tie tolerance)}; shape {n_classes, feature_dim}. Degenerate rows get NaN
    (n_iter 0, converged False); `status` says why: besides fit_ald's statuses, TIES for a point
    mass that some family cannot fit (more weights at one value than its max_tie_frac).
    Every row's numbers are independent of the other rows (see the package docstring).
    """
    w = as_rows(w)
    c, d = w.shape
    status = row_status(w)  # (C,)
    k = tie_count(w)  # (C,)
    max_tie = min(f.max_tie_frac for f in FAMILIES.values())
    status[(status == OK) & (k > 1) & (k > max_tie * d)] = TIES
    good = status == OK
    xg = w[good]  # (G, D), C-contiguous
    fits = {name: fam.fit(xg) for name, fam in FAMILIES.items()}  # each (G,)
    res: dict[str, dict[str, np.ndarray]] = {}
    for name, fam in FAMILIES.items():
        f = fits[name]
        r = {"loglik": _scatter(f["loglik"], good),
             "aic": _scatter(2 * fam.n_params - 2 * f["loglik"], good),
             "bic": _scatter(fam.n_params * np.log(d) - 2 * f["loglik"], good)}
        ks, ad = ks_ad(name, f, xg) if good.any() else (np.empty(0), np.empty(0))
        r.update(ks=_scatter(ks, good), ad=_scatter(ad, good))
        r.update({key: _scatter(f[key], good) for key in ("loc", "scale", *fam.extra)})
        res[name] = r
    lr = 2 * (res["ald"]["loglik"] - res["laplace"]["loglik"])
    df = FAMILIES["ald"].n_params - FAMILIES["laplace"].n_params  # kappa = 1 is the Laplace
    res["lr_test"] = {"stat": lr, "pvalue": stats.chi2.sf(np.maximum(lr, 0), df=df)}
    r2 = r2_log_sorted_abs(xg) if good.any() else np.empty(0)
    res["r2_line"] = {"r2": _scatter(r2, good)}
    ald = fits["ald"]
    status[good] = ald["status"]  # fit_ald's boundary statuses
    res["ald_fit"] = {**{key: _scatter(v, good) for key, v in ald.items() if key != "status"},
                      "status": status}
    aic = np.stack([res[f]["aic"] for f in FAMILIES], 1)  # (C, F)
    res["best"] = {"index": best_family(aic, d), "n_tied": _aic_ties(aic, d).sum(1)}
    res["shape"] = {"n_classes": c, "feature_dim": d}
    return res


def summary(res: dict) -> dict:
    """The science metrics of `compare_families(w)` (run with the same registry): plain Python
    numbers, no timing.

    Medians and fractions are over the non-degenerate rows; with none, a FclensError.
    best_family_counts uses best_family's tie rule; n_aic_ties counts the rows where the rule
    decided (two or more families within the tolerance). aic/bic_win_rate[f] is the fraction of
    rows where ALD's criterion is lower than f's by at least the tie tolerance. ad_median_by_family
    uses the boundary-fit AD of `ks_ad` (never NaN for a fitted row). n_not_converged counts the
    rows where a Newton fit (a family reporting `converged`) stopped without meeting its tolerance
    (0 expected).
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
                            for f, fam in FAMILIES.items() if "converged" in fam.extra},
    }
