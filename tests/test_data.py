import functools
import http.server
import io
import pickle
import tarfile
import threading

import numpy as np
import pytest

from fclens.core.downloads import download
from fclens.core.errors import FclensError
from fclens.core.io import file_digest
from fclens.datasets.prepare import read_cifar_archive, resolve_archive
from fclens.datasets.splits import load_split, save_split


def test_jpeg_archive_decodes_sorted_with_alphabetical_labels(jpeg_archive):
    splits, fmt = read_cifar_archive(jpeg_archive)
    tr = splits["train"]
    assert fmt == "cifar10-jpeg"
    assert tr.images.shape == (12, 32, 32, 3) and tr.images.dtype == np.uint8
    assert tr.class_names == ("cat", "dog", "frog")
    assert tr.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    # JPEG is lossy but close: class means differ as generated (40, 100, 160)
    means = [tr.images[tr.labels == c].mean() for c in range(3)]
    assert means[0] < means[1] < means[2]


def test_official_python_archive(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        def add(name, obj):
            data = pickle.dumps(obj)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        add("batches.meta", {b"label_names": [b"a", b"b"]})
        for i in range(1, 6):
            add(f"data_batch_{i}", {b"data": rng.integers(0, 255, (2, 3072), dtype=np.uint8),
                                    b"labels": [0, 1]})
        test = rng.integers(0, 255, (3, 3072), dtype=np.uint8)
        add("test_batch", {b"data": test, b"labels": [1, 0, 1]})
    s, fmt = read_cifar_archive(path)
    assert fmt == "cifar10-python"
    assert s["train"].images.shape == (10, 32, 32, 3)
    # red plane first, row-major: pixel (0, 1) red is byte 1, green byte 1024 + 1
    assert s["test"].images[0, 0, 1, 0] == test[0, 1]
    assert s["test"].images[0, 0, 1, 1] == test[0, 1024 + 1]
    assert s["test"].labels.tolist() == [1, 0, 1]


def test_roundtrip_and_truncated_npz(tmp_path, jpeg_archive):
    s = read_cifar_archive(jpeg_archive)[0]["test"]
    save_split(tmp_path / "t.npz", s)
    back = load_split(tmp_path / "t.npz")
    np.testing.assert_array_equal(back.images, s.images)
    raw = (tmp_path / "t.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FclensError, match="t.npz"):
        load_split(tmp_path / "t.npz")


def test_wrong_checksum_names_file_and_expected(jpeg_archive):
    bad = "sha256:" + "0" * 64
    with pytest.raises(FclensError) as e:
        resolve_archive(str(jpeg_archive), bad, None, "params.yaml datasets.x")
    assert str(jpeg_archive) in str(e.value) and "0" * 64 in str(e.value)


def test_truncated_archive_is_a_clear_error(tmp_path, jpeg_archive):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(jpeg_archive.read_bytes()[:300])
    with pytest.raises(FclensError, match="bad.tar.gz"):
        read_cifar_archive(bad)


def test_missing_archive_offline_says_what_to_put_where(tmp_path):
    dl = {"url": "http://127.0.0.1:9/cifar-10-python.tar.gz", "checksum": "md5:" + "1" * 32,
          "archive": str(tmp_path / "dl" / "cifar-10-python.tar.gz")}
    with pytest.raises(FclensError) as e:
        resolve_archive(str(tmp_path / "absent.tar.gz"), "sha256:" + "2" * 64, dl, "datasets.c")
    msg = str(e.value)
    assert "absent.tar.gz" in msg and "cifar-10-python.tar.gz" in msg and "1" * 32 in msg
    assert not list(tmp_path.rglob("*.part"))  # connection refused: nothing written
    assert not (tmp_path / "dl" / "cifar-10-python.tar.gz").exists()


@pytest.fixture
def http_dir(tmp_path):
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def send_head(self):  # minimal Range support, enough for resuming
            rng = self.headers.get("Range")
            path = root / self.path.lstrip("/")
            if not rng or not path.exists():
                return super().send_head()
            start = int(rng.split("=")[1].split("-")[0])
            data = path.read_bytes()
            if start >= len(data):
                self.send_error(416)
                return None
            self.send_response(206)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            return io.BytesIO(data[start:])

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                          functools.partial(Handler, directory=str(root)))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_download_verifies_and_resumes(http_dir, jpeg_archive, tmp_path):
    root, base = http_dir
    (root / "a.tar.gz").write_bytes(jpeg_archive.read_bytes())
    spec = "sha256:" + file_digest(jpeg_archive)
    dest = tmp_path / "out" / "a.tar.gz"
    dest.parent.mkdir()
    # a previous interrupted download left the first half
    (dest.parent / "a.tar.gz.part").write_bytes(jpeg_archive.read_bytes()[:1000])
    download(f"{base}/a.tar.gz", dest, spec)
    assert dest.read_bytes() == jpeg_archive.read_bytes()
    assert not (dest.parent / "a.tar.gz.part").exists()
    # resolve_archive falls back to the download when the configured file is absent
    dl = {"url": f"{base}/a.tar.gz", "checksum": spec, "archive": str(tmp_path / "d2" / "a.tgz")}
    got = resolve_archive(str(tmp_path / "nope.tar.gz"), spec, dl, "datasets.t")
    assert got.read_bytes() == jpeg_archive.read_bytes()


def test_download_with_wrong_checksum_leaves_nothing(http_dir, jpeg_archive, tmp_path):
    root, base = http_dir
    (root / "a.tar.gz").write_bytes(jpeg_archive.read_bytes())
    dest = tmp_path / "a.tar.gz"
    with pytest.raises(FclensError, match="expected"):
        download(f"{base}/a.tar.gz", dest, "sha256:" + "f" * 64)
    assert not dest.exists() and not (tmp_path / "a.tar.gz.part").exists()
