"""Bounded-memory analysis: streamed tables give the in-memory results (issue: scale)."""

import numpy as np
import pytest

from conftest import read_splits
from fclens.analysis.ablate import run_ablations
from fclens.analysis.decompose import (
    decompose,
    decomposed_accuracy_grid,
    index_mask,
    influential_indices,
    top_k_indices,
    train_masked_heads,
)
from fclens.core import streaming, tables
from fclens.core.params import HeadTraining
from fclens.explain.select import first_rows, pick_images, pick_per_class
from fclens.extract.parts import FeatureWriter

C, D = 7, 40


@pytest.mark.parametrize("k", [1, 3, 17, 39, 40])
def test_top_k_is_the_stable_argsort_on_ties(k):
    rng = np.random.default_rng(k)
    x = np.maximum(rng.normal(size=(500, D)), 0).round(1).astype(np.float32)  # many ties at 0
    x[:5] = 0.0  # rows with all values tied
    x[5, ::2] = -0.0  # signed zeros tie with zeros
    np.testing.assert_array_equal(top_k_indices(x, k), np.argsort(-x, 1, kind="stable")[:, :k])
    counts = rng.integers(0, 4, size=(30, D))
    np.testing.assert_array_equal(top_k_indices(counts, k),
                                  np.argsort(-counts, 1, kind="stable")[:, :k])


def _table(path, n, rng, head, centers):
    """Class-structured post-ReLU features whose stored pred is the head's argmax."""
    y = rng.integers(0, C, n)
    x = np.maximum(centers[y] + rng.normal(size=(n, D)), 0).round(2).astype(np.float32)
    pred = head.logits(x).argmax(1)
    with FeatureWriter(path, D, C, row_group_size=333) as w:
        for i in range(0, n, 250):
            s = slice(i, i + 250)
            w.write(np.arange(n)[s], y[s], pred[s], np.zeros(len(y[s]), np.float32), x[s])
    return x, y


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    d = tmp_path_factory.mktemp("splits")
    rng = np.random.default_rng(0)
    centers = np.maximum(rng.normal(size=(C, D)), 0) * 2  # (C, D)
    w = centers - centers.mean(0) + 0.3 * rng.normal(size=(C, D))  # a good, imperfect head
    head = tables.Head(w.astype(np.float32), rng.normal(size=C).astype(np.float32),
                       tuple("abcdefg"))
    for s, n in (("train", 2000), ("test", 900)):
        _table(d / f"features_{s}.parquet", n, rng, head, centers)
    mem = read_splits(d, head)
    streamed = streaming.open_splits(d, head, batch_rows=128)
    assert all(isinstance(t, streaming.FeatureTable) for t in streamed)
    assert len(list(streamed[0])) == -(-2000 // 128)  # really streamed, in 16 batches
    return head, mem, streamed


def test_algorithm1_streamed_is_identical(splits):
    head, (tr, _), (trs, _) = splits
    for k1, k2 in ((1, 1), (5, 5), (12, 3), (40, 40)):
        a, b = influential_indices(tr, C, k1, k2), influential_indices(trs, C, k1, k2)
        np.testing.assert_array_equal(a.idx, b.idx)
        np.testing.assert_array_equal(a.counts, b.counts)


def test_grid_and_ablations_streamed_match(splits):
    class Cfg:
        noise, noise_modes, n_random = "feature_stats", ["feature_stats", "standard_normal",
                                                          "zero", "train_mean"], 2

    head, (tr, te), (trs, tes) = splits
    a = decomposed_accuracy_grid(tr, te, head, [1, 5, 20], [2, 10])
    b = decomposed_accuracy_grid(trs, tes, head, [1, 5, 20], [2, 10])
    np.testing.assert_allclose(a[0], b[0], atol=1e-6)
    np.testing.assert_array_equal(a[1], b[1])
    infl = influential_indices(tr, C, 5, 5)
    m1, pc1 = run_ablations(tr, te, head, infl, Cfg, 0)
    m2, pc2 = run_ablations(trs, tes, head, infl, Cfg, 0)

    def flat(d, pre=""):
        for k, v in d.items():
            yield from (flat(v, f"{pre}{k}.") if isinstance(v, dict) else [(pre + k, v)])

    f1, f2 = dict(flat(m1)), dict(flat(m2))
    assert f1.keys() == f2.keys()
    for k, v in f1.items():
        assert v == pytest.approx(f2[k], abs=1e-6), k
    assert f1["acc_original"] > 0.8  # a real head, and the ablation bites
    assert f1["acc_noise_influential_per_class"] < f1["acc_original"] - 0.05
    np.testing.assert_allclose(pc1.drop(columns="class_name").to_numpy(float),
                               pc2.drop(columns="class_name").to_numpy(float), atol=1e-6)


def test_retraining_streamed_from_a_memory_map_matches(splits):
    head, (tr, te), (trs, tes) = splits
    infl = influential_indices(tr, C, 5, 5)
    cfg = HeadTraining(epochs=2, lr=0.01, batch_size=64)
    a, b = decompose(tr, te, head, infl, cfg, 1), decompose(trs, tes, head, infl, cfg, 1)
    for k, v in a.items():
        if k == "per_class":
            for kk, vv in v.items():
                assert vv == pytest.approx(b[k][kk], abs=1e-3), kk
        else:
            assert v == pytest.approx(b[k], abs=1e-3), k
    pc = a["per_class"]  # per class, weighted by the class's test images, gives the whole
    n = np.bincount(te.labels, minlength=C)
    for k in ("acc_original", "acc_decomposed", "acc_decomposed_retrained"):
        assert np.dot(pc[k], n) / n.sum() == pytest.approx(a[k], abs=1e-12), k
    assert a["acc_decomposed_retrained"] != a["acc_decomposed"]  # training did something


def test_heads_trained_together_equal_heads_trained_alone(splits):
    head, (tr, _), _ = splits
    rng = np.random.default_rng(2)
    masks = np.stack([index_mask(top_k_indices(rng.random((C, D)), k), D) for k in (2, 9, 30)])
    cfg = HeadTraining(epochs=2, lr=0.01, batch_size=100)
    together = train_masked_heads(tr, head, masks, cfg, 4)
    for m, h in zip(masks, together):
        alone = train_masked_heads(tr, head, m[None], cfg, 4)[0]
        np.testing.assert_array_equal(h.w, alone.w)
        np.testing.assert_array_equal(h.b, alone.b)
        assert (h.w[~m] == 0).all()


def test_image_picking_streamed_matches(splits):
    head, (_, te), (_, tes) = splits
    classes = [0, 3, 6]
    quota = np.zeros((C, 2), np.int64)
    quota[classes] = 2, 3
    rows, few = first_rows(tes.columns(("label", "pred")), quota)
    assert len(rows) <= quota.sum()
    expect = pick_images(te.labels, te.preds, classes, 2, 3)
    np.testing.assert_array_equal(rows[pick_images(few.labels, few.preds, classes, 2, 3)],
                                  expect)
    rows, few = first_rows(tes.columns(("label", "pred")), np.full((C, 2), 4))
    np.testing.assert_array_equal(rows[pick_per_class(few.labels, C, 4)],
                                  pick_per_class(te.labels, C, 4))


@pytest.mark.slow
def test_real_cifar_features_streamed_match():
    """ResNet20's real CIFAR-10 features (present after `dvc repro`), streamed in small batches."""
    from pathlib import Path

    data = Path(__file__).parents[1] / "data" / "cifar_resnet20"
    if not (data / "features_train.parquet").exists():
        pytest.skip("run `dvc repro extract_activations@cifar_resnet20` first")
    head = tables.read_fc_weights(data / "fc_weights.parquet")
    tr, te = read_splits(data, head)
    trs, tes = streaming.open_splits(data, head, batch_rows=3000)
    a, b = influential_indices(tr, 10, 5, 5), influential_indices(trs, 10, 5, 5)
    np.testing.assert_array_equal(a.idx, b.idx)
    g1 = decomposed_accuracy_grid(tr, te, head, [1, 5, 40], [1, 5, 40])[0]
    g2 = decomposed_accuracy_grid(trs, tes, head, [1, 5, 40], [1, 5, 40])[0]
    np.testing.assert_allclose(g1, g2, atol=1e-6)
