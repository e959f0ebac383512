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
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from .errors import FclensError
from .io import atomic_path, parse_checksum, verify_checksum

log = logging.getLogger(__name__)

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int16
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise FclensError(f"images must be (N, H, W, 3) uint8, got {self.images.shape} "
                              f"{self.images.dtype}")
        if len(self.labels) != len(self.images):
            raise FclensError(f"{len(self.images)} images but {len(self.labels)} labels")


@dataclass(frozen=True)
class FolderSplit:
    root: str
    paths: np.ndarray  # (N,) str, relative to root
    labels: np.ndarray  # (N,) int16
    class_names: tuple[str, ...]  # sorted class folder names: index = position (ImageFolder)

    def path(self, i: int) -> Path:
        return Path(self.root) / str(self.paths[i])


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_FOLDER_SPLITS = {"train": ("train",), "test": ("val", "test")}


def folder_class_names(split_dir: Path) -> tuple[str, ...]:
    """ImageFolder's convention: class i = the i-th sorted sub-folder name."""
    return tuple(sorted(c.name for c in Path(split_dir).iterdir() if c.is_dir()))


def dataset_class_names(cfg, where: str) -> tuple[str, ...] | None:
    """A folder dataset's class names, read from its train/ folder (None for archives, whose
    models name their own classes)."""
    if cfg.folder is None:
        return None
    if not (Path(cfg.folder) / "train").is_dir():
        raise FclensError(f"{cfg.folder}: no train/ subfolder ({where}.folder); expected "
                          f"<root>/train/<class>/*.jpg")
    return folder_class_names(Path(cfg.folder) / "train")


def scan_image_folder(root: str | Path, where: str) -> dict[str, FolderSplit]:
    """Index <root>/train/<class>/* and <root>/val (or test)/<class>/*, sorted, class = folder."""
    root = Path(root)
    layout = "<root>/train/<class>/*.jpg and <root>/val/<class>/*.jpg"
    if not root.is_dir():
        raise FclensError(f"{root}: not a directory ({where}.folder); expected {layout}")
    out = {}
    for split, names in _FOLDER_SPLITS.items():
        d = next((root / n for n in names if (root / n).is_dir()), None)
        if d is None:
            raise FclensError(f"{root}: no {' or '.join(names)}/ subfolder ({where}.folder); "
                              f"expected {layout}")
        classes = folder_class_names(d)
        paths, labels = [], []
        for i, c in enumerate(classes):
            files = sorted(f for f in (d / c).rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
            paths += [str(f.relative_to(root)) for f in files]
            labels += [i] * len(files)
        if empty := [c for i, c in enumerate(classes) if i not in set(labels)]:
            raise FclensError(f"{d}: class folders without images ({', '.join(empty[:5])}; "
                              f"{where}.folder); expected at least one "
                              f"{'/'.join(IMAGE_SUFFIXES)} file in each class folder")
        out[split] = FolderSplit(str(root), np.array(paths), np.array(labels, np.int16), classes)
    tr, te = out["train"].class_names, out["test"].class_names
    if tr != te:
        raise FclensError(f"{root}: train and {d.name} have different class folders (only in "
                          f"train: {sorted(set(tr) - set(te))[:5]}, only in {d.name}: "
                          f"{sorted(set(te) - set(tr))[:5]}); expected the same classes")
    check_classes(out, str(root))
    return out


def check_classes(splits: dict, where: str) -> None:
    """At least two classes, and every class present in every split (else accuracies and
    per-class statistics are silently meaningless)."""
    for name, s in splits.items():
        n = len(s.class_names)
        if n < 2:
            raise FclensError(f"{where}: {name} split has {n} class ({', '.join(s.class_names)}); "
                              f"expected at least 2 classes")
        if missing := sorted(set(range(n)) - set(np.unique(s.labels).tolist())):
            raise FclensError(f"{where}: {name} split has no images of classes "
                              f"{[s.class_names[i] for i in missing[:5]]}; expected every class "
                              f"in every split")


# ---------------------------------------------------------------- archive resolution + download

def download(url: str, dest: Path, checksum: str, timeout: float = 60.0) -> Path:
    """Download `url` to `dest`, resuming a `.part` file, verifying `checksum` before the rename."""
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    log.info("downloading %s -> %s (resuming at %d bytes)", url, dest, have)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resumed = have and resp.status == 206
            with open(part, "ab" if resumed else "wb") as f:
                while block := resp.read(1 << 20):
                    f.write(block)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # range not satisfiable: the .part is already complete
            pass
        else:
            raise
    try:
        verify_checksum(part, checksum, f"download of {url}")
    except FclensError:
        part.unlink()  # a wrong file must not be resumed from next time
        raise
    part.replace(dest)
    return dest


def resolve_archive(archive: str, checksum: str, download_cfg: dict | None, where: str) -> Path:
    """The configured archive if present (checksum verified), else the download fallback."""
    parse_checksum(checksum, f"{where}.checksum")
    path = Path(archive)
    if path.exists():
        verify_checksum(path, checksum, f"{where}.checksum")
        return path
    if not download_cfg:
        raise FclensError(f"{path}: not found ({where}.archive); put the file there "
                          f"({checksum}) or configure {where}.download")
    dl_path = Path(download_cfg["archive"])
    if dl_path.exists():
        verify_checksum(dl_path, download_cfg["checksum"], f"{where}.download.checksum")
        return dl_path
    try:
        return download(download_cfg["url"], dl_path, download_cfg["checksum"])
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise FclensError(
            f"{path} ({where}.archive) is absent and downloading {download_cfg['url']} failed "
            f"({e}). Offline, put either {path.name} ({checksum}) at {path}, or "
            f"{Path(download_cfg['url']).name} ({download_cfg['checksum']}) at {dl_path}"
        ) from e


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


# ---------------------------------------------------------------- compact cached form

def save_split(path: str | Path, split: Split | FolderSplit) -> None:
    data = ({"images": split.images} if isinstance(split, Split)
            else {"root": np.array(split.root), "paths": split.paths})
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, labels=split.labels, class_names=np.array(split.class_names), **data)


def load_split(path: str | Path) -> Split | FolderSplit:
    """Decoded arrays (archive datasets) or an index of image files (folder datasets)."""
    path = Path(path)
    if not path.exists():
        raise FclensError(f"{path}: missing; run `dvc repro prepare_data`")
    try:
        with np.load(path) as z:
            names = tuple(str(c) for c in z["class_names"])
            if "paths" in z:
                return FolderSplit(str(z["root"]), z["paths"], z["labels"], names)
            return Split(z["images"], z["labels"], names)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise FclensError(f"{path}: unreadable or truncated ({e}); delete it and rerun dvc repro"
                          ) from e


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
