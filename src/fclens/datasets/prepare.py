"""Dataset sources: CIFAR-10 archives (JPEG export or the official python batches), and
ImageNet-style image folders (<root>/train/<class>/*.jpg, <root>/val/<class>/*.jpg).

An archive is decoded once into compact arrays: uint8 images (N, 32, 32, 3), int16 labels, class
names. A folder is indexed instead (relative paths, labels, class names): ImageNet does not fit
in memory decoded, and the resize/crop depends on the model, so extraction decodes it streaming.
"""

from __future__ import annotations

import io
import logging
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from fclens.core.downloads import local_or_download
from fclens.core.errors import FclensError
from fclens.core.io import parse_checksum
from fclens.datasets.splits import SPLITS, Split, check_classes, save_split, scan_image_folder

log = logging.getLogger(__name__)


def resolve_archive(archive: str, checksum: str, download_cfg: dict | None, where: str) -> Path:
    """The configured archive if present (checksum verified), else the download fallback."""
    parse_checksum(checksum, f"{where}.checksum")
    dl = download_cfg or {}
    return local_or_download(
        archive, checksum, f"{where}.archive", "an archive", url=dl.get("url"),
        dl_path=dl.get("archive"), dl_checksum=dl.get("checksum"),
        missing_hint=f"put the file there ({checksum}) or configure {where}.download",
        dl_key=f"{where}.download.checksum")


# ---------------------------------------------------------------- readers

def _read_jpeg_tar(tf: tarfile.TarFile, members: list[tarfile.TarInfo]) -> dict[str, Split]:
    # layout: <root>/{train,test}/<class>/<file>.jpg ; class index = alphabetical order
    entries: dict[str, list[tuple[str, str, tarfile.TarInfo]]] = {s: [] for s in SPLITS}
    for m in members:
        parts = m.name.split("/")
        if m.isfile() and len(parts) >= 4 and parts[-3] in SPLITS and parts[-1].lower().endswith(
                (".jpg", ".jpeg", ".png")):
            entries[parts[-3]].append((parts[-2], parts[-1], m))
    class_names = tuple(sorted({c for s in SPLITS for c, _, _ in entries[s]}))
    out = {}
    for split in SPLITS:
        rows = sorted(entries[split], key=lambda r: (r[0], r[1]))
        if not rows:
            raise FclensError(f"{tf.name}: no images under */{split}/<class>/*.jpg; expected "
                              f"the cifar10-jpeg layout <root>/{{train,test}}/<class>/<file>.jpg")
        imgs = [_decode_member(tf, m) for _, _, m in tqdm(rows, desc=f"decode {split}",
                                                          mininterval=5)]
        sizes = {im.shape for im in imgs}
        if len(sizes) > 1:
            first = {im.shape: m.name for im, (_, _, m) in zip(imgs, rows)}
            raise FclensError(f"{tf.name}: images of different sizes in {split} "
                              f"({'; '.join(f'{k[1]}x{k[0]} e.g. {v}' for k, v in first.items())}"
                              f"); expected one size (use an image folder dataset for mixed "
                              f"sizes: it resizes per model)")
        labels = np.array([class_names.index(c) for c, _, _ in rows], dtype=np.int16)
        out[split] = Split(np.stack(imgs), labels, class_names)
    return out


def _decode_member(tf: tarfile.TarFile, m: tarfile.TarInfo) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(tf.extractfile(m).read())) as im:
            return np.asarray(im.convert("RGB"))  # (H, W, 3) uint8
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise FclensError(f"{tf.name}: member {m.name}: cannot decode as an image ({e})") from None


def _read_python_tar(tf: tarfile.TarFile, members: list[tarfile.TarInfo]) -> dict[str, Split]:
    by_name = {Path(m.name).name: m for m in members if m.isfile()}

    def load(name: str) -> dict:
        return pickle.load(tf.extractfile(by_name[name]), encoding="bytes")

    meta = load("batches.meta")
    class_names = tuple(n.decode() for n in meta[b"label_names"])

    def split(names: list[str]) -> Split:
        batches = [load(n) for n in names]
        data = np.concatenate([b[b"data"] for b in batches])  # (N, 3072): R plane, G, B
        images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        labels = np.concatenate([b[b"labels"] for b in batches]).astype(np.int16)
        return Split(np.ascontiguousarray(images), labels, class_names)

    return {"train": split([f"data_batch_{i}" for i in range(1, 6)]),
            "test": split(["test_batch"])}


def read_cifar_archive(path: str | Path) -> tuple[dict[str, Split], str]:
    """Either CIFAR-10 layout, detected from the member names: (splits, format)."""
    path = Path(path)
    try:
        with tarfile.open(path, "r:*") as tf:
            members = tf.getmembers()
            names = {Path(m.name).name for m in members}
            python = {"batches.meta", "test_batch"} <= names
            splits = _read_python_tar(tf, members) if python else _read_jpeg_tar(tf, members)
    except (tarfile.TarError, EOFError, OSError, KeyError, ValueError, pickle.UnpicklingError,
            zlib.error) as e:
        raise FclensError(f"{path}: cannot read as a CIFAR-10 archive ({type(e).__name__}: {e})"
                          ) from None
    check_classes(splits, str(path))
    return splits, ("cifar10-python" if python else "cifar10-jpeg")



def prepare(cfg, where: str, out: str | Path) -> dict:
    """A params `datasets.<name>` entry -> out/{train,test}.npz; returns what was read
    (format, source, sizes) for metrics/data/<name>.json."""
    if cfg.folder is not None:
        splits, fmt, source = scan_image_folder(cfg.folder, where), "image-folder", cfg.folder
    else:
        dl = cfg.download.model_dump() if cfg.download else None
        source = resolve_archive(cfg.archive, cfg.checksum, dl, where)
        splits, fmt = read_cifar_archive(source)
    for name, split in splits.items():
        save_split(Path(out) / f"{name}.npz", split)
    return {"format": fmt, "source": str(source), "n_classes": len(splits["train"].class_names),
            **{f"n_{k}": len(s.labels) for k, s in splits.items()}}
