"""Exemplars and activation distributions: streamed top-9 against a full sort, golden selectivity
and purity, the fixed-memory histograms, the streaming reader, image folders, bad input."""

import numpy as np
import pytest

from conftest import make_image_folder
from fclens.core import tables
from fclens.core.errors import FclensError
from fclens.core.tables import Features, Influential
from fclens.datasets.splits import Split, scan_image_folder
from fclens.explain import exemplars as ex
from fclens.extract.parts import FeatureWriter
from fclens.plots import maps
from fclens.report.doc import Inputs
from fclens.report.sections.exemplars import section_exemplars


def _write_features(path, x, y, row_group: int):
    with FeatureWriter(path, x.shape[1], int(y.max()) + 1, row_group) as w:
        for s in range(0, len(y), 10):  # written in pieces, row groups of `row_group` rows
            i = np.arange(s, min(s + 10, len(y)))
            w.write(i, y[i], y[i], np.zeros(len(i)), x[i])
    return path


@pytest.fixture
def table(tmp_path):
    """103 images, 4 classes, 12 features with many ties (values in 0..3, one column all 0),
    in row groups of 16 rows: smaller than N, so the scan merges many batches."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, (103, 12)).astype(np.float32)
    x[:, 5] = 0
    y = np.tile(np.arange(4), 26)[:103]
    return _write_features(tmp_path / "features_train.parquet", x, y, 16), x, y


def test_streaming_reader_gives_read_features(table):
    path, x, y = table
    full = tables.read_features(path, 4, 12)
    parts = list(tables.iter_features(path, 4, 12, batch_rows=7))
    assert max(len(p.labels) for p in parts) == 7 and len(parts) == -(-103 // 7)
    for name in ("x", "labels", "preds"):
        got = np.concatenate([getattr(p, name) for p in parts])
        np.testing.assert_array_equal(got, getattr(full, name))
        assert got.dtype == getattr(full, name).dtype
    np.testing.assert_array_equal(full.x, x)


@pytest.mark.parametrize("batch_rows", [1, 7, 16, 1000])
def test_exemplars_are_the_arg_top_9_ties_to_the_lower_index(table, batch_rows):
    path, x, y = table
    feats = np.arange(12)
    s = ex.scan(tables.iter_features(path, 4, 12, batch_rows), feats, 4, np.zeros(0, np.int64),
                np.zeros(0, np.int64), labels=y)
    # the reference: a full in-memory stable sort of each column by decreasing activation
    want = np.argsort(-x, axis=0, kind="stable")[:9].T  # (D, 9)
    np.testing.assert_array_equal(s.top_idx, want)
    np.testing.assert_array_equal(s.top_val, np.take_along_axis(x.T, want, 1))
    np.testing.assert_array_equal(s.top_label, y[want])
    np.testing.assert_array_equal(s.top_idx[5], np.arange(9))  # all-zero column: first 9 images
    order = np.argsort(-x, axis=0, kind="stable")
    assert (x[order[8], np.arange(12)] == x[order[9], np.arange(12)]).all()  # ties at the 9th
    np.testing.assert_allclose(s.sums, np.stack([x[y == c].sum(0) for c in range(4)]))
    np.testing.assert_array_equal(s.counts, np.bincount(y))


def _hand_example(batch: int) -> tuple[list[Features], Influential, np.ndarray]:
    # 5 images (classes 0 0 1 1 1), 3 features: f0 [4 2 1 1 0], f1 dead, f2 [0 0 3 3 3]
    x = np.array([[4, 0, 0], [2, 0, 0], [1, 0, 3], [1, 0, 3], [0, 0, 3]], np.float32)
    y = np.array([0, 0, 1, 1, 1])
    batches = [Features(x[i:i + batch], y[i:i + batch], y[i:i + batch])
               for i in range(0, 5, batch)]
    # influential: class 0 -> f0, class 1 -> f2; terminal+: class 0 -> f1, class 1 -> f0
    return batches, Influential(np.array([[0], [2]]), np.ones((2, 1))), np.array([[1], [0]])


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_selectivity_and_purity_golden(batch):
    batches, infl, term = _hand_example(batch)
    r = ex.exemplars(batches, infl, term, 2, [0, 1], k=3)
    # f0: mu_0 = 3, mu_1 = 2/3 -> class 0: (3 - 2/3) / (3 + 2/3) = 7/11, class 1: -7/11
    # f2: mu_0 = 0, mu_1 = 3 -> class 1: +1;  f1 dead -> 0
    # top-3: f0 -> images 0, 1, 2 (2 and 3 tie at 1: the lower index) = classes 0 0 1;
    #        f1 -> images 0 1 2 (all tie); f2 -> images 2 3 4 = classes 1 1 1
    np.testing.assert_allclose(r.shown.selectivity, [7 / 11, 0, 1, -7 / 11])
    np.testing.assert_allclose(r.shown.purity, [2 / 3, 2 / 3, 1, 1 / 3])
    np.testing.assert_array_equal(r.shown.top_idx, [[0, 1, 2], [0, 1, 2], [2, 3, 4], [0, 1, 2]])
    m = r.metrics
    assert m["n_features"] == 4 and m["n_classes"] == 2 and m["n_dead"] == 1
    assert m["n_shared"] == 0
    assert m["selectivity_median"] == pytest.approx(7 / 22)  # of 7/11, 0, 1, -7/11
    assert m["purity_at_3_median"] == pytest.approx(2 / 3)
    infl_m, term_m = m["by_source"]["influential"], m["by_source"]["terminal+"]
    assert infl_m["selectivity_median"] == pytest.approx(9 / 11)
    assert infl_m["purity_at_3_median"] == pytest.approx(5 / 6)
    assert term_m["selectivity_median"] == pytest.approx(-7 / 22)
    assert term_m["purity_at_3_median"] == pytest.approx(1 / 2) and term_m["n_dead"] == 1
    assert m["min_activation"] == 0 and m["n_images"] == 5


def test_dead_feature_counts_zero_and_negative_activations_leave_selectivity_undefined():
    batches, infl, term = _hand_example(5)
    r = ex.exemplars(batches, infl, term, 2, [0], k=3)
    dead = list(r.shown.feat).index(1)
    assert r.shown.selectivity[dead] == 0 and np.isfinite(r.shown.selectivity).all()
    neg = [Features(b.x - 1, b.labels, b.preds) for b in batches]
    m = ex.exemplars(neg, infl, term, 2, [0], k=3).metrics
    assert np.isnan(m["selectivity_median"]) and m["min_activation"] == -1


def test_shared_features_are_scored_once_and_listed_under_both_sources():
    batches, _, _ = _hand_example(2)
    infl, term = Influential(np.array([[0, 2], [2, 0]]), np.ones((2, 2))), np.array([[0], [2]])
    r = ex.exemplars(batches, infl, term, 2, [0, 1], k=3)
    assert r.metrics["n_features"] == 4 and r.metrics["n_shared"] == 2
    assert r.metrics["by_source"]["terminal+"]["n_features"] == 2
    assert r.shown.labels[0].startswith("f0 infl#1 term+#1")


def test_histograms_equal_direct_binning_at_the_final_range_whatever_the_batches():
    rng = np.random.default_rng(1)
    x = (rng.exponential(1, (500, 3)) * [0.01, 1, 300]).astype(np.float32)
    x[:50] *= 1e-3  # the first batches see a much smaller range: R doubles many times
    x[:, 0] -= 0.001  # some negative values
    y = rng.integers(0, 3, 500)
    cls, feat = np.array([0, 1, 2]), np.array([0, 1, 2])
    got = []
    for b in (1, 37, 500):
        s = ex.scan([Features(x[i:i + b], y[i:i + b], y[i:i + b]) for i in range(0, 500, b)],
                    feat, 3, cls, feat)
        got.append(s.hist)
        nb = ex.HIST_BINS
        r = 2.0 ** (np.floor(np.log2(np.abs(x).max(0))) + 1)  # smallest power of 2 > max |x|
        np.testing.assert_array_equal(s.hist_r, r)
        for g in range(3):
            bins = np.floor(x[:, g].astype(np.float64) * (nb / 2) / r[g]).astype(int) + nb // 2
            for grp, mask in enumerate((y == cls[g], y != cls[g])):
                np.testing.assert_array_equal(s.hist[g, grp], np.bincount(bins[mask],
                                                                           minlength=nb))
    assert all((h == got[0]).all() for h in got)


def test_all_zero_feature_histogram_and_display_bins():
    batches, infl, term = _hand_example(2)
    r = ex.exemplars(batches, infl, term, 2, [0], k=3)
    dead = list(r.shown.feat).index(1)
    assert r.shown.hist_r[dead] == 0 and r.shown.hist[dead, :, ex.HIST_BINS // 2].sum() == 5
    counts, edges = maps._display_bins(r.shown.hist[dead], 0.0)
    assert counts.sum() == 5 and len(edges) == counts.shape[1] + 1
    full = np.ones((2, ex.HIST_BINS), np.int64)  # every bin occupied: merged, nothing lost
    counts, edges = maps._display_bins(full, 4.0)
    assert counts.sum() == full.sum() and counts.shape[1] <= 40 and edges[0] == -4


def test_image_folder_thumbnails_and_figures(tmp_path):
    folder = make_image_folder(tmp_path / "imgs", n_train=4)  # 3 classes, 40x40 JPEGs
    split = scan_image_folder(folder, "datasets.tiny")["train"]
    rng = np.random.default_rng(2)
    x = rng.random((12, 6)).astype(np.float32)
    y = split.labels.astype(np.int64)
    infl, term = Influential(rng.permutation(6)[:6].reshape(3, 2), np.ones((3, 2))), \
        np.argsort(-rng.random((3, 6)), 1)[:, :2]
    r = ex.exemplars([Features(x[:5], y[:5], y[:5]), Features(x[5:], y[5:], y[5:])], infl, term,
                     3, [0, 2], labels=y)
    thumbs = ex.thumbnails(split, r.shown.top_idx, size=24)
    assert thumbs.shape == (len(r.shown.cls), 9, 24, 24, 3) and thumbs.dtype == np.uint8
    arch = Split(np.zeros((12, 32, 32, 3), np.uint8), split.labels, split.class_names)
    assert ex.thumbnails(arch, r.shown.top_idx).shape[2:] == (32, 32, 3)
    names = list(split.class_names)
    maps.plot_exemplars(thumbs, r.shown.cls, r.shown.labels, names, "t", tmp_path / "e.png")
    maps.plot_activation_hists(r.shown.hist, r.shown.hist_r, r.shown.cls, r.shown.labels,
                                names, "t", tmp_path / "a.png")
    assert (tmp_path / "e.png").stat().st_size > 1000 and (tmp_path / "a.png").exists()
    with pytest.raises(FclensError, match="has 12 images"):
        ex.thumbnails(split, np.array([[12]]))


# ---------------------------------------------------------------- bad input: clear errors

def _no_hist(path, n_classes, dim, labels=None):
    return ex.scan(tables.iter_features(path, n_classes, dim, 8), np.arange(3), n_classes,
                   np.zeros(0, np.int64), np.zeros(0, np.int64), labels)


def test_empty_table_and_empty_stream(tmp_path):
    with FeatureWriter(tmp_path / "f.parquet", 4, 3, 10):
        pass  # a file with 0 rows
    with pytest.raises(FclensError, match="0 rows"):
        tables.iter_features(tmp_path / "f.parquet", 3, 4, 8)
    with pytest.raises(FclensError, match="no rows"):
        ex.scan([], np.arange(2), 3, np.zeros(0, np.int64), np.zeros(0, np.int64))


def test_class_without_training_images(table):
    path, _, _ = table
    with pytest.raises(FclensError, match=r"no training images of classes \[4, 5\]"):
        _no_hist(path, 6, 12)


def test_influential_table_of_another_number_of_classes(tmp_path, table):
    path, _, _ = table
    tables.write_influential(tmp_path / "infl.parquet",
                             Influential(np.zeros((3, 2), np.int64) + [0, 1], np.ones((3, 2))))
    with pytest.raises(FclensError, match="expected the same number of rows"):
        tables.read_influential(tmp_path / "infl.parquet", 4, 12)
    with pytest.raises(FclensError, match="influential table: 3 classes; expected 4"):
        ex.exemplars(tables.iter_features(path, 4, 12, 8), Influential(
            np.zeros((3, 2), np.int64), np.ones((3, 2))), np.zeros((4, 5), np.int64), 4, [0])
    with pytest.raises(FclensError, match="terminal\\+ indices: 10 classes; expected 4"):
        ex.feature_pairs(Influential(np.zeros((4, 2), np.int64), np.ones((4, 2))),
                         np.zeros((10, 5), np.int64), 4)


def test_features_dimension_mismatch(table):
    path, _, _ = table
    with pytest.raises(FclensError, match="dimension 12; expected 64"):
        tables.iter_features(path, 4, 64, 8)
    with pytest.raises(FclensError, match="indices reach 40"):
        ex.scan(tables.iter_features(path, 4, 12, 8), np.array([3, 40]), 4,
                np.zeros(0, np.int64), np.zeros(0, np.int64))


def test_features_of_another_dataset(table):
    path, _, y = table
    with pytest.raises(FclensError, match="row 0 has label 0, the dataset's image 0 label 1"):
        _no_hist(path, 4, 12, labels=(y + 1) % 4)
    with pytest.raises(FclensError, match="103 rows, the dataset has 104 images"):
        _no_hist(path, 4, 12, labels=np.r_[y, 0])
    with pytest.raises(FclensError, match="more than the dataset's 50 rows"):
        _no_hist(path, 4, 12, labels=y[:50])


def test_out_of_range_class_group():
    batches, infl, term = _hand_example(5)
    with pytest.raises(FclensError, match=r"classes \[2\] out of range"):
        ex.exemplars(batches, infl, term, 2, [2])


# ---------------------------------------------------------------- report section

def test_report_section(tmp_path):
    inp = Inputs(tmp_path, ["m"], {"m": "cifar_resnet20"}, {"m": "ds"})
    with pytest.raises(FclensError, match="metrics/m/exemplars.json: missing"):
        section_exemplars(inp)
    batches, infl, term = _hand_example(5)
    from fclens.core.io import write_json

    write_json(tmp_path / "metrics/m/exemplars.json",
               ex.exemplars(batches, infl, term, 2, [0]).metrics)
    with pytest.raises(FclensError, match="exemplars.png: missing"):
        section_exemplars(inp)
    for f in ("exemplars", "activations"):
        (tmp_path / "plots/exemplars/m").mkdir(parents=True, exist_ok=True)
        (tmp_path / f"plots/exemplars/m/{f}.png").write_bytes(b"png")
    text = "\n".join(section_exemplars(inp))
    assert "../plots/exemplars/m/exemplars.png" in text and "activations.png" in text
    assert "| m | 2 | 4 |" in text
    assert "No feature model" in section_exemplars(Inputs(tmp_path, [], {}, {}))[0]


def test_memory_does_not_grow_with_the_number_of_images():
    import tracemalloc

    def peak(n_batches: int) -> int:
        def batches():
            rng = np.random.default_rng(3)
            for _ in range(n_batches):
                y = rng.integers(0, 10, 1000)
                yield Features(rng.random((1000, 16), np.float32), y, y)

        infl = Influential(np.arange(30).reshape(10, 3) % 16, np.ones((10, 3)))
        tracemalloc.start()
        ex.exemplars(batches(), infl, np.zeros((10, 1), np.int64) + 15, 10, [0, 1])
        size = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return size

    assert peak(100) < 1.2 * peak(10)  # 100k vs 10k images: the same state, one batch at a time
