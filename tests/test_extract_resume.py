"""Resumable extraction: a killed run's successor starts at its last complete row group, and
the tables and metrics are those of one uninterrupted run."""

import logging

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import assert_same_tables
from fclens.core.constants import CIFAR10_CLASSES
from fclens.core.params import Extract, ModelSpec
from fclens.datasets.splits import Split, save_split
from fclens.extract import local as ex
from fclens.extract.backend import extract_splits
from fclens.extract.parts import FeatureParts
from fclens.models.registry import build_model

CFG = Extract(batch_size=8, row_group_size=16)  # parts of 2 batches
UINT8_BATCHES = ex.uint8_batches


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split, n in (("train", 45), ("test", 20)):
        save_split(d / f"{split}.npz", Split(rng.integers(0, 256, (n, 32, 32, 3), np.uint8),
                                             rng.integers(0, 10, n).astype(np.int16),
                                             CIFAR10_CLASSES))
    return d


def _model(seed=1):
    return build_model(ModelSpec(name="t", arch="cifar_resnet8"), seed=seed)


def _batches(monkeypatch, fail_after=None):
    """Count the batches extraction reads per split; optionally die after `fail_after`."""
    counts = []

    def counted(images, labels, batch_size):
        counts.append(0)
        for b in UINT8_BATCHES(images, labels, batch_size):
            if fail_after is not None and sum(counts) == fail_after:
                raise RuntimeError("killed")
            counts[-1] += 1
            yield b

    monkeypatch.setattr(ex, "uint8_batches", counted)
    return counts


def test_killed_run_resumes_at_its_last_complete_row_group(data, tmp_path, monkeypatch, caplog):
    ref_metrics, _ = extract_splits(_model(), data, tmp_path / "ref", CFG, "t")
    out = tmp_path / "out"
    _batches(monkeypatch, fail_after=5)  # rows 0..31 in two parts, a third part half done
    with pytest.raises(RuntimeError, match="killed"):
        extract_splits(_model(), data, out, CFG, "t")
    parts = out / ".features_train.parquet.parts"
    assert sorted(p.name for p in parts.glob("rows-*")) == [
        "rows-000000000000-000000000016.parquet", "rows-000000000016-000000000032.parquet"]
    assert not (out / "features_train.parquet").exists()

    counts = _batches(monkeypatch)
    with caplog.at_level(logging.INFO, logger="fclens.extract.backend"):
        metrics, _ = extract_splits(_model(), data, out, CFG, "t")
    assert "t train: resuming at row 32 of 45" in caplog.text
    assert counts == [2, 3]  # train rows 32..44 only (an uninterrupted run reads 6 + 3)
    assert_same_tables(out, tmp_path / "ref")
    assert metrics == ref_metrics  # counts and errors add up over the parts
    assert not parts.exists() and not (out / ".features_test.parquet.parts").exists()
    assert pq.ParquetFile(out / "features_train.parquet").metadata.num_row_groups == 3


def test_parts_of_other_weights_are_not_reused(data, tmp_path, monkeypatch, caplog):
    out = tmp_path / "out"
    _batches(monkeypatch, fail_after=5)
    with pytest.raises(RuntimeError):
        extract_splits(_model(seed=1), data, out, CFG, "t")
    counts = _batches(monkeypatch)
    with caplog.at_level(logging.INFO, logger="fclens.extract.parts"):
        extract_splits(_model(seed=2), data, out, CFG, "t")
    assert "discarding parts made with another configuration (weights differ)" in caplog.text
    assert counts == [6, 3]  # all of train again
    monkeypatch.undo()
    extract_splits(_model(seed=2), data, tmp_path / "ref", CFG, "t")
    assert_same_tables(out, tmp_path / "ref")


def test_a_damaged_or_detached_part_is_redone(tmp_path):
    path, fp = tmp_path / "f.parquet", {"weights": "abc"}
    p = FeatureParts(path, fp, dim=4, n_classes=3)
    assert p.open() == 0
    rng = np.random.default_rng(0)
    for start in (0, 5, 10):
        p.write(np.arange(start, start + 5), rng.integers(0, 3, 5), rng.integers(0, 3, 5),
                rng.normal(size=5), rng.normal(size=(5, 4)), meta={"n": 5})
    files = sorted(p.dir.glob("rows-*"))
    files[2].write_bytes(files[2].read_bytes()[:100])  # a torn write (disk full, power loss)
    (p.dir / "rows-000000000020-000000000025.parquet").write_bytes(files[0].read_bytes())
    q = FeatureParts(path, fp, dim=4, n_classes=3)
    assert q.open() == 10 and q.metas == [{"n": 5}, {"n": 5}]
    assert sorted(f.name for f in q.dir.glob("rows-*")) == [f.name for f in files[:2]]
    with pytest.raises(Exception, match="expected consecutive indices"):
        q.write(np.arange(11, 16), *(np.zeros(5),) * 3, np.zeros((5, 4)), meta={})


def test_an_image_folder_resumes_too(tmp_path, monkeypatch):
    from conftest import make_image_folder
    from fclens.datasets.splits import scan_image_folder

    root = make_image_folder(tmp_path / "images", n_train=7, n_val=2)  # 21 train images
    for split, s in scan_image_folder(root, "datasets.tiny").items():
        save_split(tmp_path / f"{split}.npz", s)
    model = build_model(ModelSpec(name="t", arch="cifar_resnet8", num_classes=3), seed=1)
    cfg = Extract(batch_size=4, row_group_size=8, num_workers=0)
    extract_splits(model, tmp_path, tmp_path / "ref", cfg, "t")
    real, rows = ex.folder_batches, []

    def dies_after_three(split, *a):  # rows 0..7 in one part, then killed
        rows.append(split.paths[0])
        yield from list(real(split, *a))[:3]
        raise RuntimeError("killed")

    monkeypatch.setattr(ex, "folder_batches", dies_after_three)
    with pytest.raises(RuntimeError):
        extract_splits(model, tmp_path, tmp_path / "out", cfg, "t")
    def seen(split, *a):
        rows.append(split.paths[0])
        return real(split, *a)

    monkeypatch.setattr(ex, "folder_batches", seen)
    extract_splits(model, tmp_path, tmp_path / "out", cfg, "t")
    first = scan_image_folder(root, "datasets.tiny")["train"].paths
    assert rows[1] == first[8]  # the rerun read the folder from image 8 on
    assert_same_tables(tmp_path / "out", tmp_path / "ref")
