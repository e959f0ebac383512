import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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
                    img = np.clip(rng.normal(60 * ci + 40, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
                    buf = io.BytesIO()
                    Image.fromarray(img).save(buf, format="JPEG", quality=95)
                    data = buf.getvalue()
                    info = tarfile.TarInfo(f"cifar10/{split}/{c}/{i:04d}.jpg")
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def jpeg_archive(tmp_path):
    return make_jpeg_archive(tmp_path / "tiny.tar.gz")
