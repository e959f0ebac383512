"""Our vectorized ALD MLE against scipy.stats.laplace_asymmetric.fit, in one run.

scipy is timed on a sample of classes and scaled up; every timing is the best of three (a noisy
shared machine). Writes metrics/bench/ald.json.
"""

import logging

import numpy as np
from scipy import stats

from _common import OUT, best_of, machine
from fclens.analysis.ald import compare_families, fit_ald
from fclens.core.io import write_json
from fclens.core.tables import read_fc_weights

N_SCIPY = 20


def main():
    logging.basicConfig(level=logging.INFO)
    w = read_fc_weights("data/tf_efficientnet_lite0/fc_weights.parquet").w.astype(np.float64)
    ours = fit_ald(w)
    ours_s = best_of(lambda: fit_ald(w))
    rng = np.random.default_rng(0)
    sample = rng.choice(len(w), N_SCIPY, replace=False)
    fits = [stats.laplace_asymmetric.fit(w[c]) for c in sample]
    scipy_s = best_of(lambda: [stats.laplace_asymmetric.fit(w[c]) for c in sample]) \
        * len(w) / N_SCIPY
    ll_scipy = [stats.laplace_asymmetric.logpdf(w[c], *p).sum() for c, p in zip(sample, fits)]
    diff = ours["loglik"][sample] - np.array(ll_scipy)
    big = np.random.default_rng(1).standard_normal((1000, 2048)) * 0.02
    big_s = best_of(lambda: fit_ald(big))
    fams = compare_families(w)
    all_s = best_of(lambda: compare_families(w))
    newton = ("student_t", "logistic")
    res = {"machine": machine(), "classes": len(w), "dim": w.shape[1],
           "ours_seconds": ours_s, "scipy_seconds_scaled": scipy_s, "scipy_sample_classes": N_SCIPY,
           "speedup_vs_scipy": scipy_s / ours_s, "loglik_min_gain_vs_scipy": float(diff.min()),
           "loglik_never_lower": bool((diff >= -1e-9).all()),
           "random_1000x2048_seconds": big_s, "all_families_lite0_seconds": all_s,
           # per-row Newton fits: the most steps any row needed, and rows that missed the tolerance
           "max_newton_steps": {f: int(fams[f]["n_iter"].max()) for f in newton},
           "not_converged": {f: int((~fams[f]["converged"]).sum()) for f in newton}}
    write_json(OUT / "ald.json", res, digits=4)
    logging.info("%s", res)


if __name__ == "__main__":
    main()
