"""Grad-CAM++ and Smooth Grad-CAM++ grids of each image's class logit and channel-set targets.

Dataset models (--data): per class in explain.classes, correctly and wrongly classified test
images, explained for their true class. Models without a dataset (--photos): scikit-image's
sample photographs plus explain.image_folder, explained for their top-1 class.
"""

from pathlib import Path

import numpy as np
import torch
from _stage import run

from fclens.data import IMAGE_SUFFIXES, Split, load_split
from fclens.decompose import read_influential
from fclens.explain import (METHOD_TITLES, class_activation_map, class_targets, compute_cams,
                            pick_images)
from fclens.extract import load_uint8, normalizer, resolve_device, uint8_transform
from fclens.tables import read_fc_weights
from fclens.io import FclensError, read_table, write_json
from fclens.models import build_model
from fclens.params import model_spec
from fclens.plots import plot_cam_grid

def dataset_inputs(args, cfg, model, dev, n_classes):
    split = load_split(Path(args.data) / "test.npz")
    t = read_table(args.features, columns=["label", "pred"])
    labels, preds = t["label"].to_numpy().astype(int), t["pred"].to_numpy().astype(int)
    classes = [c for c in cfg["classes"] if 0 <= c < n_classes]
    if not classes:
        raise FclensError(f"params.yaml explain.classes: {cfg['classes']}; expected class "
                          f"indices in 0..{n_classes - 1}")
    idx = pick_images(labels, preds, classes, cfg["n_correct"], cfg["n_wrong"])
    if isinstance(split, Split):
        images = split.images[idx]  # (N, H, W, 3) uint8
    else:  # image folder: the same resize/crop as extraction
        images = _load_uint8(model, [split.path(i) for i in idx])
    x = _normalize(model, images, dev)
    names = split.class_names
    rows = [f"{names[labels[i]]} ✓" if preds[i] == labels[i] else
            f"{names[labels[i]]}→{names[preds[i]]}" for i in idx]
    infl = read_influential(read_table(args.influential), n_classes)
    return images, x, labels[idx], rows, infl


def _load_uint8(model, images) -> np.ndarray:
    """Paths or PIL images -> (N, H, W, 3) uint8 through the model's eval resize/crop."""
    tf = uint8_transform(model)
    return np.stack([load_uint8(im, tf).numpy() for im in images])


def _normalize(model, images: np.ndarray, dev) -> torch.Tensor:
    return normalizer(model).to(dev)(torch.from_numpy(images).to(dev)).contiguous()  # (N,3,H,W)


def _photos(cfg) -> list[tuple[str, object]]:
    import skimage.data
    from PIL import Image

    out = []
    for name in cfg["photos"]:
        fn = getattr(skimage.data, name, None)
        if fn is None or not callable(fn):
            raise FclensError(f"params.yaml explain.photos: {name!r} is not a scikit-image sample "
                              f"image (e.g. chelsea, coffee, astronaut, rocket)")
        out.append((name, Image.fromarray(fn()).convert("RGB")))
    folder = cfg.get("image_folder")
    if folder:
        folder = Path(folder)
        if not folder.is_dir():
            raise FclensError(f"params.yaml explain.image_folder: {folder} is not a directory")
        files = sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        out += [(f.stem, f) for f in files[:cfg["max_folder_images"]]]
    if not out:
        raise FclensError("params.yaml explain.photos and explain.image_folder: no images")
    return out


def photo_inputs(cfg, model, dev, names):
    photos = _photos(cfg)
    images = _load_uint8(model, [im for _, im in photos])
    x = _normalize(model, images, dev)
    with torch.inference_mode():
        p, cls = model(x).softmax(1).max(1)
    rows = [f"{n}: {names[c][:16]} {pp:.0%}" for (n, _), c, pp in
            zip(photos, cls.tolist(), p.tolist())]
    return images, x, cls.cpu().numpy(), rows, None


def main(args, p):
    cfg = p["explain"]
    dev = resolve_device(p["extract"]["device"])
    model = build_model(model_spec(p, args.model), p["seed"]).to(dev)
    w, b, names = read_fc_weights(read_table(args.weights))
    nodes = read_table(args.trees).to_pandas()
    images, x, cls, rows, infl = (dataset_inputs(args, cfg, model, dev, len(w)) if args.data
                                  else photo_inputs(cfg, model, dev, names))
    per_image = [class_targets(w, b, int(c), nodes, infl) for c in cls]
    targets = per_image[0][0]
    m = np.stack([t[1] for t in per_image])  # (N, K, D)
    c = np.stack([t[2] for t in per_image])  # (N, K)
    out = Path(args.out)
    seconds, n_maps, by_method = 0.0, 0, {}
    for method in cfg["methods"]:
        r = compute_cams(model, x, m, c, method, cfg["n_samples"], cfg["sigma"], p["seed"])
        seconds, n_maps = seconds + r.seconds, n_maps + r.n_maps
        by_method[method] = r.seconds / r.n_maps
        plot_cam_grid(images, r.maps, rows, list(targets),
                      f"{args.model}: {METHOD_TITLES[method]} at the map feeding the pooling",
                      out / f"{method}.png")
    # Exact check on the real model: Grad-CAM of a logit == ReLU(CAM) / (h*w) (GAP + linear)
    g = compute_cams(model, x, m[:, :1], c[:, :1], "gradcam", raw=True).maps[:, 0]  # (N, h, w)
    cam = np.stack([class_activation_map(model, x[i:i + 1], int(k))[0] for i, k in enumerate(cls)])
    hw = g.shape[-1] * g.shape[-2]
    err = float(np.abs(g * hw - np.maximum(cam, 0)).max() / max(np.abs(cam).max(), 1e-12))
    write_json(args.metrics, {
        "n_maps": n_maps, "seconds_per_map": seconds / n_maps,
        "seconds_per_map_by_method": by_method, "device": str(dev),
        "n_images": len(images), "targets": list(targets), "methods": list(cfg["methods"]),
        "gradcam_vs_cam_max_rel_err": err,
    }, digits=3)


if __name__ == "__main__":
    def add(ap):
        ap.add_argument("--model", required=True)
        for k in ("weights", "trees", "out", "metrics"):
            ap.add_argument(f"--{k}", required=True)
        for k in ("data", "features", "influential"):
            ap.add_argument(f"--{k}")
    run("explain", main, add, builds_models=True)
