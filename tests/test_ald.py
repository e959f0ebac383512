import numpy as np
import pytest
from scipy import stats

from fclens.ald import (BOUNDARY_RIGHT, CONSTANT, NONFINITE, TOO_FEW, compare_families, fit_ald,
                        fit_logistic, fit_student_t, r2_log_sorted_abs)


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
    assert np.isnan(r["gaussian"]["aic"][:2]).all() and np.isfinite(r["gaussian"]["aic"][2:]).all()


def test_other_families_match_scipy_fits():
    rng = np.random.default_rng(3)
    x = rng.standard_t(4, (3, 500)) * 0.2 + 0.1
    t = fit_student_t(x)
    lg = fit_logistic(x)
    for i in range(3):
        p = stats.t.fit(x[i])
        # grid + polish: within 0.05 nats of scipy's per-row optimizer (AIC gaps are far larger)
        assert t["loglik"][i] >= stats.t.logpdf(x[i], *p).sum() - 0.05
        q = stats.logistic.fit(x[i])
        assert lg["loglik"][i] >= stats.logistic.logpdf(x[i], *q).sum() - 1e-6


def test_family_comparison_picks_the_generating_family():
    rng = np.random.default_rng(5)
    g = rng.normal(size=(20, 2000))
    a = stats.laplace_asymmetric.rvs(0.5, size=(20, 2000), random_state=rng)
    r = compare_families(np.concatenate([g, a]))
    aic = np.stack([r[f]["aic"] for f in ("ald", "gaussian")], 1)
    assert (aic[:20, 1] < aic[:20, 0]).mean() > 0.8  # Gaussian rows: Gaussian wins
    assert (aic[20:, 0] < aic[20:, 1]).all()  # ALD rows: ALD wins
    assert (r["lr_test"]["pvalue"][20:] < 0.05).all()
    ks = r["ald"]["ks"][20:]
    ref = [stats.kstest(a[i], stats.laplace_asymmetric(r["ald_fit"]["kappa"][20 + i],
           r["ald_fit"]["loc"][20 + i], r["ald_fit"]["scale"][20 + i]).cdf).statistic for i in range(3)]
    np.testing.assert_allclose(ks[:3], ref, rtol=1e-9)


def test_blog_r2_cannot_tell_gaussian_from_ald():
    rng = np.random.default_rng(0)
    r_g = np.median(r2_log_sorted_abs(rng.normal(size=(50, 512))))
    r_a = np.median(r2_log_sorted_abs(stats.laplace_asymmetric.rvs(0.7, size=(50, 512),
                                                                    random_state=rng)))
    assert abs(r_g - r_a) < 0.1
