"""Neural collapse figures (fclens.analysis.geometry): a collapsed simplex ETF gives the limits to
machine precision, random data gives the textbook formulas computed the plain way, streaming
gives what one batch gives, and one class or a missing class is a clear error."""

import numpy as np
import pytest

from fclens.analysis.geometry import geometry, weight_geometry
from fclens.core.errors import FclensError
from fclens.core.tables import Features, Head


def simplex_etf(c: int, d: int) -> np.ndarray:
    """(C, D) rows of a simplex equiangular tight frame: unit norm, pairwise cosine -1/(C-1)."""
    m = np.eye(c) - 1 / c  # (C, C) centred one-hots, rank C-1
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    return np.pad(m, ((0, 0), (0, d - c)))  # (C, D)


def collapsed(c: int, d: int, per_class: int):
    m = simplex_etf(c, d)
    mu_g = np.zeros(d)
    mu_g[-1] = 3.0  # off the span of M, so W mu_G is 0 and argmax(W x) is the class
    y = np.repeat(np.arange(c), per_class)
    x = (mu_g + 2.5 * m[y]).astype(np.float32)  # every feature on its class mean
    head = Head((4 * m).astype(np.float32), np.zeros(c, np.float32), tuple(map(str, range(c))))
    return Features(x, y, head.logits(x).argmax(1)), head


def test_a_collapsed_simplex_etf_gives_the_limits_to_machine_precision():
    c = 5
    f, head = collapsed(c, 12, 7)
    g = geometry(f, f, head, seed=0)
    for split in ("train", "test"):
        s = g[split]
        assert s["nc1"] == pytest.approx(0, abs=1e-12)
        assert s["nc3"] == pytest.approx(0, abs=1e-12)
        assert s["nc4"] == 0 and s["ncc_acc"] == 1
        for k in ("nc2_norm_cv_means", "nc2_cos_std_means", "nc2_cos_shift_means",
                  "nc2_norm_cv_w", "nc2_cos_std_w", "nc2_cos_shift_w"):
            assert s[k] == pytest.approx(0, abs=1e-6), k  # float32 features and weights
        np.testing.assert_allclose(s["per_class"]["nearest_cos"], -1 / (c - 1), atol=1e-6)
        np.testing.assert_allclose(s["per_class"]["mean_norm"], 2.5, rtol=1e-6)
    np.testing.assert_allclose(g["weights"]["per_class"]["w_norm"], 4, rtol=1e-6)
    # the control: the same features, labels shuffled: no collapse left, chance accuracy
    for split in ("train", "test"):
        ctl = g[split]["control_shuffled_labels"]
        assert ctl["nc1"] > 1 and ctl["ncc_acc"] < 0.6


def naive(x, y, w, train_means, preds):
    """The textbook formulas, written plainly on all rows at once."""
    c = w.shape[0]
    mu_g = x.mean(0)
    means = np.stack([x[y == k].mean(0) for k in range(c)])
    z = x - means[y]
    sigma_w = z.T @ z / len(x)
    m = means - mu_g
    sigma_b = m.T @ m / c
    nc1 = np.trace(sigma_w @ np.linalg.pinv(sigma_b)) / c
    un = m / np.linalg.norm(m, axis=1, keepdims=True)
    cos = (un @ un.T)[~np.eye(c, dtype=bool)]
    nc3 = np.sum((w / np.linalg.norm(w) - m / np.linalg.norm(m)) ** 2)
    ncc = np.argmin(((x[:, None, :] - train_means[None]) ** 2).sum(2), 1)
    norms = np.linalg.norm(m, axis=1)
    return {"nc1": nc1, "nc2_norm_cv_means": norms.std() / norms.mean(),
            "nc2_cos_std_means": cos.std(), "nc2_cos_shift_means": np.abs(cos + 1 / (c - 1)).mean(),
            "nc3": nc3, "nc4": np.mean(ncc != preds), "ncc_acc": np.mean(ncc == y)}, means


def test_random_data_matches_the_plain_formulas_and_streaming_matches_one_batch():
    rng = np.random.default_rng(3)
    c, d = 4, 9
    head = Head(rng.normal(size=(c, d)).astype(np.float32), rng.normal(size=c).astype(np.float32),
                tuple("abcd"))

    def split(n, seed):
        r = np.random.default_rng(seed)
        y = np.arange(n) % c
        x = np.abs(r.normal(size=(n, d)) + y[:, None] * 0.3).astype(np.float32)
        return Features(x, y, head.logits(x).argmax(1))

    tr, te = split(200, 1), split(90, 2)
    g = geometry(tr, te, head, seed=0)
    tr_means = np.stack([tr.x[tr.labels == k].mean(0) for k in range(c)]).astype(np.float64)
    want_tr, means = naive(tr.x.astype(np.float64), tr.labels, head.w.astype(np.float64),
                           tr_means, tr.preds)
    want_te, _ = naive(te.x.astype(np.float64), te.labels, head.w.astype(np.float64), means,
                       te.preds)
    for got, want in ((g["train"], want_tr), (g["test"], want_te)):
        for k, v in want.items():
            assert got[k] == pytest.approx(v, rel=1e-6, abs=1e-9), k
    assert 0 < g["test"]["nc4"] < 1 and g["train"]["nc1"] > 0
    for f, name in ((tr, "train"), (te, "test")):  # the control: the formulas on shuffled labels
        y = np.random.default_rng(0).permutation(f.labels)
        ctl_means = np.stack([f.x[y == k].mean(0) for k in range(c)]).astype(np.float64)
        want, _ = naive(f.x.astype(np.float64), y, head.w.astype(np.float64), ctl_means, f.preds)
        got = g[name]["control_shuffled_labels"]
        assert got["nc1"] == pytest.approx(want["nc1"], rel=1e-6)
        assert got["ncc_acc"] == pytest.approx(want["ncc_acc"])

    def chunks(f, size):
        return [Features(f.x[i:i + size], f.labels[i:i + size], f.preds[i:i + size])
                for i in range(0, len(f.labels), size)]

    streamed = geometry(chunks(tr, 37), chunks(te, 16), head, seed=0)
    for s in ("train", "test"):
        for k in want_tr:
            assert streamed[s][k] == pytest.approx(g[s][k], rel=1e-9, abs=1e-12), (s, k)
        assert streamed[s]["control_shuffled_labels"] == pytest.approx(
            g[s]["control_shuffled_labels"], rel=1e-9)


def test_one_class_or_a_class_without_images_is_a_clear_error():
    one = Head(np.ones((1, 3), np.float32), np.zeros(1, np.float32), ("only",))
    with pytest.raises(FclensError, match="at least 2 classes"):
        weight_geometry(one)
    f = Features(np.ones((4, 3), np.float32), np.zeros(4, np.int64), np.zeros(4, np.int64))
    with pytest.raises(FclensError, match="^w.parquet: 1 class; neural collapse needs at least 2"):
        geometry(f, f, one, seed=0, where=("tr.parquet", "te.parquet", "w.parquet"))
    two = Head(np.eye(2, 3, dtype=np.float32), np.zeros(2, np.float32), ("a", "b"))
    with pytest.raises(FclensError, match=r"features_train: no image of class \[1\]"):
        geometry(f, f, two, seed=0)
    # degenerate geometry is an error, not a figure: a zero weight row (its cosines would read
    # as orthogonal) and class means that coincide (Σ_B = 0 would read as NC1 = 0)
    three = Head(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]], np.float32), np.zeros(3, np.float32),
                 ("a", "b", "c"))
    with pytest.raises(FclensError, match=r"^w.parquet: the weight row of class \[2\] is zero"):
        weight_geometry(three, "w.parquet")
    same = Features(np.ones((6, 3), np.float32), np.arange(6) % 2, np.zeros(6, np.int64))
    with pytest.raises(FclensError, match=r"tr: the mean minus the global mean of class \[0, 1\]"):
        geometry(same, same, two, seed=0, where=("tr", "te", "w"))
