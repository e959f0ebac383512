"""MACO's fixed magnitude spectrum from images the project has, for one visualize.models entry:
its dataset's training images (feature models) or the scikit-image sample photographs (params
explain.photos), with its source."""

import json
import logging
import time
from pathlib import Path

import numpy as np

from _stage import check_declared, run
from fclens.core.errors import FclensError
from fclens.core.io import atomic_path
from fclens.datasets.splits import load_split
from fclens.explain.select import sample_photos
from fclens.explain.spectrum import magnitude_spectrum, photo_crops

PHOTO_SIDE = 224  # crops of the photos; `visualize` resamples the spectrum to its own size


def main(a, p):
    n, t0 = p.visualize.spectrum_images, time.perf_counter()
    if a.model not in p.visualize.models:
        raise FclensError(f"params.yaml visualize.models: {a.model!r} is not listed "
                          f"({p.visualize.models})")
    if a.model in p.feature_models:
        data = f"data/{p.feature_models[a.model]}"
        check_declared("spectrum", [data])
        path = Path(data) / "train.npz"
        split = load_split(path)
        if not hasattr(split, "images"):
            raise FclensError(f"{path}: an image-folder dataset; the spectrum needs same-size "
                              f"images in the archive (e.g. cifar10)")
        images = split.images[:n]  # (n, H, W, 3) uint8
        source = {"source": str(path), "images": f"the first {len(images)} training images"}
    else:
        names = p.explain.photos
        if not names:
            raise FclensError("params.yaml explain.photos: empty; the photo spectrum needs at "
                              "least one scikit-image sample photo")
        images = photo_crops(sample_photos(names), PHOTO_SIDE, n, p.seed)
        source = {"source": "scikit-image sample photos " + ", ".join(names),
                  "images": f"{n} random {PHOTO_SIDE}px crops (short side resized to "
                            f"{PHOTO_SIDE}, random flips, seed {p.seed}) of {len(names)} photos"}
    mag = magnitude_spectrum(images, source["source"])  # (3, H, W//2+1)
    source |= {"n_images": len(images), "size": list(images.shape[1:3]),
               "colour": "decorrelated (horama's colour matrix); DC: its 3 nearest frequencies' "
                         "mean magnitude"}
    with atomic_path(a.out) as tmp, open(tmp, "wb") as f:
        np.savez(f, magnitude=mag, source=np.array(json.dumps(source)))
    logging.getLogger("spectrum").info("%s: %s in %.1f s", a.out, source["images"],
                                       time.perf_counter() - t0)


if __name__ == "__main__":
    run("spectrum", main, "model out")
