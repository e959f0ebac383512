"""Which images are explained, and as what model input: dataset test images picked from the
streamed label/pred columns in bounded memory, or the sample photographs (+ a user folder). The
one home of image picking for the CAM, faithfulness, activation and visualization stages."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fclens.core.errors import FclensError
from fclens.core.streaming import FeatureTable
from fclens.core.tables import Features, Head, read_influential
from fclens.datasets.splits import IMAGE_SUFFIXES, load_split
from fclens.models.inputs import load_uint8, normalizer, uint8_transform


def first_rows(batches: Iterable[Features], quota: np.ndarray) -> tuple[np.ndarray, Features]:
    """Image picking in bounded memory: of each (class c, correct?) group, its first
    quota[c, 0 if correct else 1] rows, streamed from `batches` (label and pred are enough),
    stopping once every quota is met. Returns their row indices (M,) ascending and their rows
    (x empty), so a picker that takes the first rows of such groups gives the same images on
    these as on the whole split."""
    taken = np.zeros_like(quota, dtype=np.int64)  # (C, 2)
    rows, labels, preds, start = [], [], [], 0
    for f in batches:
        group = f.labels * 2 + (f.preds != f.labels)  # (B,) flat (class, wrong) index
        # rank of each row within its group, counting the rows already taken before the batch
        order = np.argsort(group, kind="stable")
        gs = group[order]
        first = np.r_[0, np.flatnonzero(gs[1:] != gs[:-1]) + 1]
        rank = np.empty(len(gs), np.int64)
        rank[order] = np.arange(len(gs)) - np.repeat(first, np.diff(np.r_[first, len(gs)]))
        keep = rank + taken.ravel()[group] < quota.ravel()[group]
        rows.append(start + np.flatnonzero(keep))
        labels.append(f.labels[keep])
        preds.append(f.preds[keep])
        taken.ravel()[:] += np.bincount(group[keep], minlength=taken.size)
        start += len(f.labels)
        if (taken >= quota).all():
            break
    lab = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    return (np.concatenate(rows) if rows else np.zeros(0, np.int64),
            Features(np.zeros((len(lab), 0), np.float32), lab,
                     np.concatenate(preds) if preds else np.zeros(0, np.int64)))


def pick_images(labels: np.ndarray, preds: np.ndarray, classes: list[int], n_correct: int,
                n_wrong: int) -> np.ndarray:
    """Per class, the first n_correct correctly and n_wrong wrongly classified test images."""
    picked = []
    for c in classes:
        mine = labels == c
        picked += list(np.flatnonzero(mine & (preds == c))[:n_correct])
        picked += list(np.flatnonzero(mine & (preds != c))[:n_wrong])
    if not picked:
        raise FclensError(f"params.yaml explain.classes {classes} with n_correct={n_correct}, "
                          f"n_wrong={n_wrong}: no test image matches; expected at least one")
    return np.asarray(picked, dtype=np.int64)


def pick_per_class(labels: np.ndarray, n_classes: int, n_per_class: int) -> np.ndarray:
    """The first (lowest-index) n_per_class test images of every class, in index order."""
    idx = np.sort(np.concatenate([np.flatnonzero(labels == c)[:n_per_class]
                                  for c in range(n_classes)] or [np.zeros(0, np.int64)]))
    if len(idx) == 0:
        raise FclensError(f"faithfulness: no test image picked (n_per_class={n_per_class}, "
                          f"{len(labels)} labels in 0..{n_classes - 1}); expected at least one")
    return idx.astype(np.int64)


@dataclass
class Inputs:
    """What to explain: images (N, H, W, 3) uint8, their normalized tensor, the class explained
    per image, a row label per image, and the Algorithm-1 indices (None without a dataset)."""

    images: np.ndarray
    x: torch.Tensor
    cls: np.ndarray
    rows: list[str]
    influential: np.ndarray | None
    preds: np.ndarray | None = None  # the model's prediction per image (dataset images)
    names: list[str] | None = None  # per image: test_<row> (dataset) or the photo / file stem


def _to_model_input(model: nn.Module, images: list, dev: torch.device
                    ) -> tuple[np.ndarray, torch.Tensor]:
    """Paths or PIL images -> (N, H, W, 3) uint8 through the model's eval resize/crop, and the
    normalized (N, 3, H, W) tensor on `dev`."""
    tf = uint8_transform(model)
    arr = np.stack([load_uint8(im, tf).numpy() for im in images])
    return arr, _normalize(model, arr, dev)


def _normalize(model: nn.Module, images: np.ndarray, dev: torch.device) -> torch.Tensor:
    return normalizer(model).to(dev)(torch.from_numpy(images).to(dev)).contiguous()


def photo_inputs(model: nn.Module, photos: list[str], folder: str | None, max_folder: int,
                 names: tuple[str, ...], dev: torch.device) -> Inputs:
    """scikit-image sample photographs (+ a folder of the user's), explained for their top-1."""
    from PIL import Image

    items = [(n, Image.fromarray(im)) for n, im in zip(photos, sample_photos(photos))]
    if folder:
        if not Path(folder).is_dir():
            raise FclensError(f"params.yaml explain.image_folder: {folder} is not a directory")
        files = sorted(f for f in Path(folder).rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        items += [(f.stem, f) for f in files[:max_folder]]
    if not items:
        raise FclensError("params.yaml explain.photos and explain.image_folder: no images; "
                          "expected at least one photo name or a folder with images")
    images, x = _to_model_input(model, [im for _, im in items], dev)
    with torch.inference_mode():
        prob, cls = model(x).softmax(1).max(1)
    rows = [f"{n}: {names[c][:16]} {pp:.0%}" for (n, _), c, pp in
            zip(items, cls.tolist(), prob.tolist())]
    return Inputs(images, x, cls.cpu().numpy(), rows, None, names=[n for n, _ in items])


def sample_photos(photos: list[str]) -> list[np.ndarray]:
    """scikit-image sample photographs by name (params explain.photos), each (H, W, 3) uint8."""
    import skimage.data

    out = []
    for name in photos:
        fn = getattr(skimage.data, name, None)
        if fn is None or not callable(fn):
            raise FclensError(f"params.yaml explain.photos: {name!r} is not a scikit-image sample "
                              f"image; expected e.g. chelsea, coffee, astronaut, rocket")
        im = np.asarray(fn())
        out.append(np.repeat(im[..., None], 3, -1) if im.ndim == 2 else im[..., :3])
    return out


def split_images(model: nn.Module, split, idx: np.ndarray, dev: torch.device
                 ) -> tuple[np.ndarray, torch.Tensor]:
    """Test images `idx` of a split: (N, H, W, 3) uint8 and the normalized (N, 3, H, W) tensor;
    image folders through the same resize/crop as extraction."""
    if hasattr(split, "images"):
        return split.images[idx], _normalize(model, split.images[idx], dev)
    return _to_model_input(model, [split.path(i) for i in idx], dev)


def stage_inputs(model: nn.Module, head: Head, photos, dev: torch.device, data: str | None,
                 features: str | None, influential: str | None, quota: np.ndarray,
                 pick: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Inputs:
    """What a CAM or faithfulness stage explains. Dataset models (`data` given): the test
    images that `pick(labels, preds)` chooses among the first `quota` (C, 2) correct / wrong
    rows per class (streamed), with the Algorithm-1 indices. Others: the photographs of
    `photos` (params `explain`), explained for their top-1; no dataset, so no influential set."""
    if not data:
        return photo_inputs(model, photos.photos, photos.image_folder, photos.max_folder_images,
                            head.names, dev)
    split = load_split(Path(data) / "test.npz")
    test = FeatureTable(Path(features), head.n_classes, head.dim)
    infl = read_influential(influential, head.n_classes, head.dim).idx
    rows, few = first_rows(test.columns(("label", "pred")), quota)
    local = pick(few.labels, few.preds)
    images, x = split_images(model, split, rows[local], dev)
    names, y, pred = split.class_names, few.labels[local], few.preds[local]
    labels = [f"{names[a]} ✓" if b == a else f"{names[a]}→{names[b]}" for a, b in zip(y, pred)]
    return Inputs(images, x, y, labels, infl, pred, [f"test_{i}" for i in rows[local]])


def explain_inputs(model: nn.Module, head: Head, e, dev: torch.device, data: str | None,
                   features: str | None, influential: str | None) -> Inputs:
    """The images of the params `explain` section (`e`): for dataset models, the first
    e.n_correct correct and e.n_wrong wrong test images of each of e.classes (checked against
    the head by `Params.class_indices` first); else the photographs."""
    quota = np.zeros((head.n_classes, 2), np.int64)
    quota[e.classes if data else []] = e.n_correct, e.n_wrong
    return stage_inputs(model, head, e, dev, data, features, influential, quota,
                        lambda y, pred: pick_images(y, pred, e.classes, e.n_correct, e.n_wrong))
