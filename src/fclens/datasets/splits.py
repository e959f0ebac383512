"""The dataset contract between prepare_data and the stages that read images: a split is either
decoded arrays (`Split`, archives) or an index of image files (`FolderSplit`, ImageNet-style
folders), cached as data/<dataset>/{train,test}.npz.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fclens.core.errors import FclensError
from fclens.core.io import atomic_path

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

