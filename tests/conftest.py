import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fclens.core.streaming import check_head
from fclens.core.tables import FEATURES, read

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def make_jpeg_archive(path: Path, n_per_class: int = 4, classes=("cat", "dog", "frog"),
                      seed: int = 0) -> Path:
    """A tiny archive in the cifar10-jpeg layout: cifar10/{train,test}/<class>/NNNN.jpg."""
    rng = np.random.default_rng(seed)
    with tarfile.open(path, "w:gz") as tf:
        for split in ("train", "test"):
            for ci, c in enumerate(classes):
                for i in range(n_per_class):
                    img = np.clip(rng.normal(60 * ci + 40, 30, (32, 32, 3)), 0, 255)
                    img = img.astype(np.uint8)
                    buf = io.BytesIO()
                    Image.fromarray(img).save(buf, format="JPEG", quality=95)
                    data = buf.getvalue()
                    info = tarfile.TarInfo(f"cifar10/{split}/{c}/{i:04d}.jpg")
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
    return path


def make_image_folder(root: Path, n_train: int = 4, n_val: int = 2, classes=("n01", "n02", "n03"),
                      size: int = 40, seed: int = 0) -> Path:
    """An ImageNet-style folder: root/{train,val}/<class>/*.jpg (size x size, not 32: resized)."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for ci, c in enumerate(classes):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = np.clip(rng.normal(60 * ci + 40, 30, (size, size, 3)), 0, 255)
                Image.fromarray(img.astype(np.uint8)).save(root / split / c / f"{i:03d}.JPEG",
                                                           format="JPEG", quality=95)
    return root



# test references: the plain formulas the library's batched code must reproduce

def decomposed_logits(x: np.ndarray, w: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """logit_c = x[I_c] . W[c, I_c] + b_c for all classes at once: x (N, D) -> (N, C)."""
    return x @ (w * mask).T + b


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose argmax is the label (NaN if no rows)."""
    return float((logits.argmax(1) == labels).mean()) if len(labels) else float("nan")


@pytest.fixture
def jpeg_archive(tmp_path):
    return make_jpeg_archive(tmp_path / "tiny.tar.gz")


def assert_same_tables(a, b):
    """Two extraction output folders hold the same tables: index, label, pred equal, features
    within 1e-6 (byte-identical files are not promised across backends)."""
    for split in ("train", "test"):
        ta, tb = (read(d / f"features_{split}.parquet", FEATURES) for d in (a, b))
        for col in ("index", "label", "pred"):
            np.testing.assert_array_equal(ta[col].to_numpy(), tb[col].to_numpy())
        np.testing.assert_allclose(np.stack(ta["features"].to_numpy(zero_copy_only=False)),
                                   np.stack(tb["features"].to_numpy(zero_copy_only=False)),
                                   atol=1e-6)


def read_splits(data, head):
    """features_train.parquet and features_test.parquet of `data` in memory, checked against
    `head` (the analysis stages stream them with `streaming.open_splits`)."""
    from fclens.core import tables

    splits = tuple(tables.read_features(Path(data) / f"features_{s}.parquet", head.n_classes,
                                        head.dim) for s in ("train", "test"))
    for s, f in zip(("train", "test"), splits):
        check_head(Path(data) / f"features_{s}.parquet", f, head)
    return splits


# `make test` hands whole files to 2 xdist workers in this order (--dist loadfile
# --no-loadscope-reorder): the smoke project's build and tests on one worker, the catalogue and
# the other long files on the other while it builds, then the reruns of that project (ready by
# then), then the many short files, which even out the two workers' ends.
FILE_ORDER = ("test_pipeline_e2e.py", "test_reliability.py", "test_pipeline_orphan.py",
              "test_extract_ray.py", "test_pipeline_rerun.py", "test_pipeline_rerun_analysis.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return FILE_ORDER.index(name) if name in FILE_ORDER else len(FILE_ORDER)

    items.sort(key=rank)  # stable: the order within a file stays
