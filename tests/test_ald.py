import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from fclens.analysis import ald
from fclens.analysis.ald import (
    BOUNDARY_LEFT,
    BOUNDARY_RIGHT,
    CONSTANT,
    FAMILIES,
    NONFINITE,
    TIES,
    TOO_FEW,
    Family,
    best_family,
    class_curves,
    compare_families,
    fit_ald,
    fit_logistic,
    fit_student_t,
    r2_log_sorted_abs,
    summary,
)
from fclens.analysis.ald.families.logistic import _logistic_ll, _logistic_ll_grad_hess
from fclens.analysis.ald.families.student_t import _t_ll, _t_ll_grad_hess
from fclens.core import tables
from fclens.core.errors import FclensError


def _cdf(family: str, fit: dict, xs: np.ndarray) -> np.ndarray:
    """Fitted cdf at xs (G, n), from the family's log cdf."""
    return np.exp(FAMILIES[family].log_cdf_sf(xs, fit)[0])


@pytest.mark.parametrize("kappa,loc,scale", [(0.5, 0.2, 1.0), (1.0, 0.0, 0.3), (2.0, -1.0, 0.05)])
def test_recovers_known_parameters(kappa, loc, scale):
    x = stats.laplace_asymmetric.rvs(kappa, loc, scale, size=(4, 20000),
                                     random_state=np.random.default_rng(1))
    f = fit_ald(x)
    np.testing.assert_allclose(f["kappa"], kappa, rtol=0.05)
    np.testing.assert_allclose(f["scale"], scale, rtol=0.05)
    np.testing.assert_allclose(f["loc"], loc, atol=0.05 * scale)


def test_loglik_never_below_scipy_fit_and_matches_scipy_logpdf():
    rng = np.random.default_rng(0)
    rows = np.concatenate([
        stats.laplace_asymmetric.rvs(0.6, 0, 0.1, size=(4, 64), random_state=rng),
        rng.normal(size=(4, 64)), rng.standard_t(3, size=(4, 300))[:, :64]])
    f = fit_ald(rows)
    for i, x in enumerate(rows):
        p = stats.laplace_asymmetric.fit(x)
        ll_scipy = stats.laplace_asymmetric.logpdf(x, *p).sum()
        assert f["loglik"][i] >= ll_scipy - 1e-9
        ours = stats.laplace_asymmetric.logpdf(x, f["kappa"][i], f["loc"][i], f["scale"][i]).sum()
        assert ours == pytest.approx(f["loglik"][i], rel=1e-10)


def test_exact_mle_on_hand_example():
    # x = [-2,-1,0,0,0,1,2]: sqrt(a)+sqrt(b) at t = -2,-1,0,1,2 is 1.414, 1.447, 1.309, 1.447,
    # 1.414, so t = 0 with a = b = 3/7: kappa = 1, scale = 2a = 6/7
    x = np.array([[-2.0, -1.0, 0.0, 0.0, 0.0, 1.0, 2.0]])
    f = fit_ald(x)
    a = b = 3 / 7
    assert f["loc"][0] == 0.0 and f["kappa"][0] == pytest.approx(1.0)
    assert f["scale"][0] == pytest.approx(6 / 7)
    assert f["loglik"][0] == pytest.approx(7 * (-2 * np.log(np.sqrt(a) + np.sqrt(b)) - 1))
    # [0, 1, 4] is a boundary case: t = 0 (a = 5/3, b = 0) beats t = 1 and t = 4
    assert fit_ald(np.array([[0.0, 1.0, 4.0]]))["status"][0] == BOUNDARY_RIGHT


def test_degenerate_and_boundary_rows():
    rows = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, np.nan, 1.0, 2.0],
                     [0.0, 0.0, 0.0, 10.0],  # mass at the minimum: exponential to the right
                     [0.0, 1.0, 3.0, 2.0]])
    f = fit_ald(rows)
    assert f["status"][0] == CONSTANT and f["status"][1] == NONFINITE
    assert np.isnan(f["loglik"][:2]).all()
    assert f["status"][2] == BOUNDARY_RIGHT and f["kappa"][2] == 0 and f["loc"][2] == 0
    assert f["scale"][2] == pytest.approx(2.5)  # the exponential's mean
    assert f["loglik"][2] == pytest.approx(4 * (-np.log(2.5) - 1))
    assert fit_ald(np.ones((2, 2)))["status"].tolist() == [TOO_FEW, TOO_FEW]
    r = compare_families(rows)  # no crash; degenerate rows NaN with a status
    assert np.isnan(r["gaussian"]["aic"][:3]).all() and np.isfinite(r["gaussian"]["aic"][3])
    assert r["ald_fit"]["status"][2] == TIES  # 3 of 4 weights at 0: a point mass (MAX_TIE_FRAC)


def test_other_families_match_scipy_fits():
    rng = np.random.default_rng(3)
    x = rng.standard_t(4, (3, 500)) * 0.2 + 0.1
    t = fit_student_t(x)
    lg = fit_logistic(x)
    assert t["converged"].all() and lg["converged"].all()
    for i in range(3):
        p = stats.t.fit(x[i])
        # per-row Newton to a 1e-10 nat predicted gain: never below scipy's optimizer
        assert t["loglik"][i] >= stats.t.logpdf(x[i], *p).sum() - 1e-6
        ours = stats.t.logpdf(x[i], t["df"][i], t["loc"][i], t["scale"][i]).sum()
        assert ours == pytest.approx(t["loglik"][i], rel=1e-10)
        q = stats.logistic.fit(x[i])
        assert lg["loglik"][i] >= stats.logistic.logpdf(x[i], *q).sum() - 1e-6
        ours = stats.logistic.logpdf(x[i], lg["loc"][i], lg["scale"][i]).sum()
        assert ours == pytest.approx(lg["loglik"][i], rel=1e-10)


def test_family_comparison_picks_the_generating_family():
    rng = np.random.default_rng(5)
    g = rng.normal(size=(20, 2000))
    a = stats.laplace_asymmetric.rvs(0.5, size=(20, 2000), random_state=rng)
    r = compare_families(np.concatenate([g, a]))
    aic = np.stack([r[f]["aic"] for f in ("ald", "gaussian")], 1)
    assert (aic[:20, 1] < aic[:20, 0]).mean() > 0.8  # Gaussian rows: Gaussian wins
    assert (aic[20:, 0] < aic[20:, 1]).all()  # ALD rows: ALD wins
    assert (r["lr_test"]["pvalue"][20:] < 0.05).all()
    ks, f = r["ald"]["ks"][20:], r["ald_fit"]
    ref = [stats.kstest(a[i], stats.laplace_asymmetric(f["kappa"][20 + i], f["loc"][20 + i],
                                                       f["scale"][20 + i]).cdf).statistic
           for i in range(3)]
    np.testing.assert_allclose(ks[:3], ref, rtol=1e-9)


def test_blog_r2_cannot_tell_gaussian_from_ald():
    rng = np.random.default_rng(0)
    r_g = np.median(r2_log_sorted_abs(rng.normal(size=(50, 512))))
    r_a = np.median(r2_log_sorted_abs(stats.laplace_asymmetric.rvs(0.7, size=(50, 512),
                                                                    random_state=rng)))
    assert abs(r_g - r_a) < 0.1


# ---------------------------------------------------------------- determinism

def _mixed_rows(c: int, d: int, seed: int) -> np.ndarray:
    """Rows from every family (and a boundary row), so that every solver path is exercised."""
    rng = np.random.default_rng(seed)
    kind = np.arange(c) % 4
    x = np.where(kind[:, None] == 0, rng.normal(size=(c, d)),
                 np.where(kind[:, None] == 1, rng.standard_t(3, (c, d)),
                          np.where(kind[:, None] == 2, rng.logistic(size=(c, d)),
                                   stats.laplace_asymmetric.rvs(0.6, size=(c, d),
                                                                random_state=rng))))
    x[5] = rng.exponential(size=d)  # boundary_exp_right
    return 0.02 * x + rng.normal(0, 0.005, (c, 1))


def _flat(res: dict) -> dict[str, np.ndarray]:
    return {f"{g}.{k}": np.asarray(v) for g, d in res.items() for k, v in d.items()}


def _assert_rows_equal(big: dict, rows: np.ndarray, small: dict) -> None:
    """Every per-row array of `small` equals `big` at `rows`, bit for bit (NaN == NaN)."""
    b, s = _flat(big), _flat(small)
    assert b.keys() == s.keys()
    for k in b:
        if k.startswith("shape."):
            continue
        if b[k].dtype == object:
            assert (b[k][rows] == s[k]).all(), k
        else:
            assert np.array_equal(b[k][rows], s[k], equal_nan=True), k


def test_row_fit_independent_of_the_other_rows():
    w = _mixed_rows(1000, 256, 11)
    big = compare_families(np.asfortranarray(w))  # F order in, same numbers as C order
    _assert_rows_equal(big, np.array([17]), compare_families(w[17:18]))
    sub = np.random.default_rng(0).permutation(1000)[:97]
    sub = np.concatenate([sub, [17, 5]])  # a boundary row among them
    _assert_rows_equal(big, sub, compare_families(w[sub]))
    assert big["ald_fit"]["status"][5] == BOUNDARY_RIGHT


_SUMMARY_SCRIPT = """
import sys
import numpy as np
from fclens.analysis.ald import compare_families, summary
from fclens.core.io import write_json
rng = np.random.default_rng(2024)
w = np.concatenate([rng.normal(size=(100, 512)), rng.standard_t(4, (100, 512)),
                    rng.laplace(size=(100, 512)) + 0.3 * rng.exponential(size=(100, 512))]) * 0.02
write_json(sys.argv[1], summary(compare_families(w)), digits=4)
"""


def test_summary_identical_with_one_thread_and_avx2(tmp_path):
    """The issue: a second machine changed best-family counts and 4th digits; BLAS threads and
    CPU features must not reach the metrics. The third run also turns off numpy's AVX-512
    loops (another CPU's exp/log, different in the last bits): the rounded summary must hold."""
    one = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "ONEDNN_MAX_CPU_ISA": "AVX2"}
    no_avx512 = {**one, "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"}
    texts = []
    for i, extra in enumerate(({}, one, no_avx512)):
        out = tmp_path / f"summary{i}.json"
        subprocess.run([sys.executable, "-c", _SUMMARY_SCRIPT, str(out)], check=True,
                       env={**os.environ, **extra}, timeout=120)
        texts.append(out.read_text())
    assert texts[0] == texts[1] == texts[2]
    assert json.loads(texts[0])["n_classes"] == 300


# ---------------------------------------------------------------- best family, summary

def test_best_family_tie_rule():
    n = 1000  # tolerance 1e-6 * n = 1e-3
    aic = np.array([
        [10.0, 10.0, 10.0, 10.0, 10.0],  # exact tie of all: the first family (ald)
        [12.0, 11.0, 11.0, 13.0, 9.0],  # clear winner: logistic
        [12.0, 11.0, 11.0, 13.0, 14.0],  # exact tie gaussian/laplace: gaussian
        [5.0, 5.0 - 0.9e-3, 7.0, 7.0, 7.0],  # gaussian lower by less than the tolerance: ald
        [5.0, 5.0 - 1.1e-3, 7.0, 7.0, 7.0],  # lower by more than the tolerance: gaussian
        [9.0, 9.0, 8.0, 8.0 - 5e-4, 9.0],  # near tie laplace/student_t: laplace (listed first)
        [np.nan] * 5,  # degenerate row
        [np.nan, 3.0, np.nan, 2.0, np.nan],  # NaN never wins
    ])
    np.testing.assert_array_equal(best_family(aic, n), [0, 4, 1, 0, 1, 2, -1, 3])
    # the tolerance scales with n: the near tie of row 3 is a clear difference for n = 100
    assert best_family(aic[3:4], 100)[0] == 1
    for bad in (np.zeros(5), np.zeros((2, 0))):
        with pytest.raises(FclensError, match="aic must be"):
            best_family(bad, n)
    with pytest.raises(FclensError, match="positive integer"):
        best_family(aic, 0)


def test_summary_on_gaussian_rows():
    rng = np.random.default_rng(7)
    w = rng.normal(size=(40, 3000)) * rng.uniform(0.01, 0.1, (40, 1))
    w[3] = 0.5  # constant: degenerate
    res = compare_families(w)
    s = summary(res)
    keys = {"n_classes", "feature_dim", "kappa_median", "frac_kappa_lt_1", "aic_win_rate",
            "bic_win_rate", "best_family_counts", "lr_test_reject_frac", "ks_median",
            "ks_median_by_family", "ad_median_by_family", "r2_line_median", "n_degenerate",
            "status_counts", "n_boundary", "n_aic_ties", "n_not_converged"}
    assert set(s) == keys  # no fit_seconds: timing is not a science metric
    assert (s["n_classes"], s["feature_dim"], s["n_degenerate"]) == (40, 3000, 1)
    assert s["status_counts"] == {"constant": 1, "ok": 39} and s["n_boundary"] == 0
    counts = s["best_family_counts"]
    assert sum(counts.values()) == 39 and counts["gaussian"] >= 30
    assert s["aic_win_rate"]["gaussian"] < 0.1  # ALD's extra parameter rarely pays
    assert 0.8 < s["kappa_median"] < 1.25 and 0 <= s["lr_test_reject_frac"] <= 1
    assert s["ks_median"] == s["ks_median_by_family"]["ald"]
    assert s["n_not_converged"] == {"student_t": 0, "logistic": 0} and s["n_aic_ties"] == 0
    # plain Python numbers, none NaN (JSON-ready)
    flat = [v for v in s.values() if not isinstance(v, dict)]
    flat += [v for d in s.values() if isinstance(d, dict) for v in d.values()]
    assert all(type(v) in (int, float) and v == v for v in flat)
    # light-tailed samples put Student-t at its df bound: a Gaussian, to 1e-3 nats on 3000 points
    at_bound = res["student_t"]["df"] > 1e5
    assert 5 < at_bound.sum() < 39
    np.testing.assert_allclose(res["student_t"]["loglik"][at_bound],
                               res["gaussian"]["loglik"][at_bound], atol=1e-3, rtol=0)


# ---------------------------------------------------------------- boundary fits

def test_boundary_rows_ks_finite_ad_without_the_end_point():
    rng = np.random.default_rng(3)
    e = rng.exponential(size=(2, 300))
    rows = np.concatenate([e[:1], -e[1:], rng.normal(size=(2, 300))])  # right, left, ok, ok
    res = compare_families(rows)
    ald = res["ald_fit"]
    assert ald["status"][:2].tolist() == [BOUNDARY_RIGHT, BOUNDARY_LEFT]
    assert ald["kappa"][0] == 0 and np.isinf(ald["kappa"][1])
    for fam in FAMILIES:
        assert np.isfinite(res[fam]["ks"]).all() and np.isfinite(res[fam]["ad"]).all(), fam
    for r, sign in ((0, 1), (1, -1)):
        xs = np.sort(sign * (rows[r] - ald["loc"][r]))  # distances from the end point, >= 0
        f = stats.expon.cdf(xs, scale=ald["scale"][r])
        # KS over all n points (F = 0 at the end point itself)
        ks = stats.kstest(xs, stats.expon(scale=ald["scale"][r]).cdf).statistic
        assert res["ald"]["ks"][r] == pytest.approx(ks, rel=1e-9)
        # AD over the m = n - 1 points inside the support, by the textbook formula
        fi = f[1:]
        m, i = len(fi), np.arange(1, len(fi) + 1)
        ad = -m - ((2 * i - 1) * (np.log(fi) + np.log1p(-fi[::-1]))).sum() / m
        assert res["ald"]["ad"][r] == pytest.approx(ad, rel=1e-9)
        assert res["ald"]["ad"][r] < 5  # an exponential sample fits its exponential
    s = summary(res)
    assert s["n_boundary"] == 2
    assert all(np.isfinite(v) for v in [s["ks_median"], *s["ks_median_by_family"].values(),
                                        *s["ad_median_by_family"].values()])


def test_cdf_finite_at_both_boundaries():
    xs = np.array([[-3.0, -1.0, 0.0], [0.0, 1.0, 3.0]])
    fit = {"loc": np.zeros(2), "scale": np.ones(2), "kappa": np.array([np.inf, 0.0])}
    np.testing.assert_allclose(_cdf("ald", fit, xs), [[np.exp(-3), np.exp(-1), 1.0],
                                                      [0.0, 1 - np.exp(-1), 1 - np.exp(-3)]])
    # interior kappa: scipy's cdf
    fit["kappa"] = np.array([0.7, 1.8])
    want = [stats.laplace_asymmetric.cdf(xs[i], fit["kappa"][i]) for i in range(2)]
    np.testing.assert_allclose(_cdf("ald", fit, xs), want, rtol=1e-12)


def test_bad_input_raises():
    with pytest.raises(FclensError, match=r"\(C, D\) matrix"):
        compare_families(np.zeros(5))


@pytest.mark.parametrize("which", ["student_t", "logistic"])
def test_newton_derivatives_match_finite_differences(which):
    lgh, ll = {"student_t": (_t_ll_grad_hess, _t_ll),
               "logistic": (_logistic_ll_grad_hess, _logistic_ll)}[which]
    y = np.random.default_rng(0).standard_t(4, (3, 200))
    th = {"student_t": np.array([[0.1, -0.2, 1.0], [0.0, 0.3, 3.0], [-0.2, 0.0, 0.2]]),
          "logistic": np.array([[0.1, 1.5], [0.0, 2.0], [-0.3, 1.0]])}[which]
    val, g, h = lgh(y, th)
    np.testing.assert_allclose(val, ll(y, th), rtol=1e-12)
    eps = 1e-5
    for j in range(th.shape[1]):
        e = np.zeros(th.shape[1])
        e[j] = eps
        np.testing.assert_allclose(g[:, j], (ll(y, th + e) - ll(y, th - e)) / (2 * eps),
                                   atol=1e-6 * np.abs(g).max())
        np.testing.assert_allclose(h[:, :, j], (lgh(y, th + e)[1] - lgh(y, th - e)[1]) / (2 * eps),
                                   atol=1e-6 * np.abs(h).max())


# ---------------------------------------------------------------- the family registry

def _fit_uniform(x: np.ndarray) -> dict[str, np.ndarray]:
    """Uniform MLE per row of x (R, N): the sample's range."""
    lo, hi = x.min(1), x.max(1)
    return {"loc": lo, "scale": hi - lo, "loglik": -x.shape[1] * np.log(hi - lo)}


def _uniform_logpdf(x: np.ndarray, fit: dict) -> np.ndarray:
    z = (x - fit["loc"][:, None]) / fit["scale"][:, None]
    return np.where((z >= 0) & (z <= 1), -np.log(fit["scale"][:, None]), -np.inf)


def _uniform_log_cdf_sf(x: np.ndarray, fit: dict) -> tuple[np.ndarray, np.ndarray]:
    z = np.clip((x - fit["loc"][:, None]) / fit["scale"][:, None], 0, 1)
    with np.errstate(divide="ignore"):
        return np.log(z), np.log1p(-z)


# what a new file in analysis/ald/families/ would hold; registering it is one line
UNIFORM = Family("uniform", 2, _fit_uniform, _uniform_logpdf, _uniform_log_cdf_sf)


def test_a_new_family_is_one_file_and_one_registry_line(monkeypatch, tmp_path):
    monkeypatch.setitem(ald.FAMILIES, "uniform", UNIFORM)  # the registry line
    rng = np.random.default_rng(9)
    w = np.concatenate([rng.uniform(-0.1, 0.1, (12, 500)), rng.normal(0, 0.05, (12, 500))])
    res = compare_families(w)
    u = res["uniform"]
    assert np.isfinite(u["aic"]).all() and np.isfinite(u["bic"]).all()
    np.testing.assert_allclose(u["aic"], 4 - 2 * u["loglik"])
    # AD leaves out the two sample points on the ends of the fitted support; the fit is good
    assert np.isfinite(u["ad"]).all() and (u["ks"][:12] < 0.1).all()
    best = res["best"]["index"]
    assert list(FAMILIES).index("uniform") == 5
    assert (best[:12] == 5).all() and (best[12:] != 5).all()  # picked exactly on its own data
    s = summary(res)
    assert s["best_family_counts"]["uniform"] == 12 and s["aic_win_rate"]["uniform"] == 0.5
    assert set(s["ks_median_by_family"]) == set(FAMILIES)
    assert s["n_not_converged"] == {"student_t": 0, "logistic": 0}  # no Newton: not counted
    # the ald_gof table takes its column groups from the families passed in, and its reader
    # checks the groups the table holds (core keeps no list of families)
    names = tuple(str(i) for i in range(len(w)))
    tables.write_ald(tmp_path, res, names, tuple(FAMILIES))
    gof = tables.read_frame(tmp_path / "ald_gof.parquet", tables.ALD_GOF, len(w))
    np.testing.assert_array_equal(gof["uniform_aic"], u["aic"])
    with pytest.raises(FclensError, match="uniform_bic"):
        tables.write_frame(tmp_path / "bad.parquet", gof.drop(columns="uniform_bic"),
                           tables.ALD_GOF, len(w))
    # the densities drawn for the figure come from the same registry
    curves = class_curves(w, res, [0], families=("uniform",))
    inside = curves["grid"][0][1:-1]
    np.testing.assert_allclose(curves["density"]["uniform"][0, 1:-1],
                               stats.uniform.pdf(inside, u["loc"][0], u["scale"][0]))


def test_class_curves_are_the_fitted_laws():
    rng = np.random.default_rng(4)
    e = rng.exponential(size=(1, 300))
    w = np.concatenate([stats.laplace_asymmetric.rvs(0.7, size=(2, 300), random_state=rng), e,
                        np.ones((1, 300))]).astype(np.float32)  # as read_fc_weights gives it
    res = compare_families(w)
    cur = class_curves(w, res, [0, 2, 3])
    f, g = res["ald_fit"], res["gaussian"]
    assert cur["fitted"].tolist() == [True, True, False] and cur["grid"].shape == (3, 400)
    np.testing.assert_array_equal(cur["x"][1], np.sort(w[2]))
    np.testing.assert_allclose(cur["density"]["ald"][0], stats.laplace_asymmetric.pdf(
        cur["grid"][0], f["kappa"][0], f["loc"][0], f["scale"][0]), rtol=1e-12)
    np.testing.assert_allclose(cur["density"]["gaussian"][0], stats.norm.pdf(
        cur["grid"][0], g["loc"][0], g["scale"][0]), rtol=1e-12)
    q = (np.arange(1, 301) - 0.5) / 300
    np.testing.assert_allclose(cur["qq"][0], stats.laplace_asymmetric.ppf(
        q, f["kappa"][0], f["loc"][0], f["scale"][0]), rtol=1e-12)
    assert f["kappa"][2] == 0  # boundary: the QQ is against the shifted exponential
    np.testing.assert_allclose(cur["qq"][1], f["loc"][2] + stats.expon.ppf(q) * f["scale"][2])
    assert np.isnan(cur["qq"][2]).all() and np.isnan(cur["density"]["laplace"][2]).all()
    # the figures draw these arrays: the plots package never imports the fits
    code = "import sys, fclens.plots.weights; assert 'fclens.analysis.ald' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
