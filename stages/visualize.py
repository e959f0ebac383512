"""Maximum-response synthetic inputs: MACO and Fourier images of every class's logit, decomposed
logit and top chain-terminal channel, with self / transfer rates, plausibility and path check;
dataset models (--data) or the photo model (classes of the sample photos)."""

import json
import time
from pathlib import Path

import numpy as np

from _stage import check_declared, run
from fclens.analysis.trees import chain_node
from fclens.core import io, tables
from fclens.core.errors import FclensError
from fclens.datasets.splits import load_split
from fclens.explain import select
from fclens.explain import visualize as vis
from fclens.explain.spectrum import resize_spectrum
from fclens.explain.visualize_study import Natural, study
from fclens.models.inputs import resolve_device
from fclens.models.registry import build_model
from fclens.plots import visualize as plots

N_EXEMPLARS = 9


def judges(p, model: str, names: tuple[str, ...], dev) -> dict:
    """The other models of visualize.models + transfer_models with the same class names."""
    v = p.visualize
    others = [m for m in v.models + v.transfer_models if m != model]
    check_declared("visualize", [f"data/{m}" for m in others])
    return {m: build_model(p.model(m), p.seed).to(dev) for m in others
            if tables.read_fc_weights(f"data/{m}/fc_weights.parquet").names == names}


def main(a, p):
    t0 = time.perf_counter()
    v, dev = p.visualize, resolve_device(p.extract.device)
    if a.model not in v.models:
        raise FclensError(f"params.yaml visualize.models: {a.model!r} is not listed ({v.models})")
    vis.check_names(v.methods, vis.METHODS, "visualize.methods")
    vis.check_names(v.objectives, vis.OBJECTIVES, "visualize.objectives")
    if a.model in p.feature_models:  # a matrix entry cannot name its own dataset: checked
        a.data, own = f"data/{p.feature_models[a.model]}", f"data/{a.model}"
        check_declared("visualize", [a.data, own])
        a.influential, a.features = f"{own}/influential.parquet", f"{own}/features_train.parquet"
    else:
        a.data = a.influential = a.features = None
    model = build_model(p.model(a.model), p.seed).to(dev)
    head = tables.read_fc_weights(a.weights)
    nodes = tables.read_frame(a.trees, tables.TREE_NODES, head.n_classes)
    terminal = [chain_node(nodes, c, "+") for c in range(head.n_classes)]
    side = vis.input_side(model, v.size)
    split = None
    if a.data:  # every class; Algorithm-1 sets; natural = first n_natural training images/class
        split = load_split(Path(a.data) / "train.npz")
        classes = np.arange(head.n_classes)
        decomposed, dec_set = list(tables.read_influential(a.influential, head.n_classes,
                                                           head.dim).idx), "influential"
        nat = select.pick_per_class(split.labels, head.n_classes, v.n_natural)
        natural = Natural(split.images[nat].transpose(0, 3, 1, 2) / np.float32(255),
                          split.labels[nat], f"{a.data}/train.npz: the first {v.n_natural} "
                                             f"training images of each class")
    else:  # the photos' top-1 classes; no dataset: no Algorithm-1 set, natural = the photos
        e = p.explain
        inp = select.photo_inputs(model, e.photos, e.image_folder, e.max_folder_images,
                                  head.names, dev)
        classes, decomposed, dec_set = np.unique(inp.cls), terminal, "terminal+ (no dataset)"
        natural = Natural(inp.images.transpose(0, 3, 1, 2) / np.float32(255), inp.cls,
                          "the sample photos, each of its top-1 class")
    targets = vis.build_targets(head.w, head.b, classes, v.objectives, decomposed, terminal)
    z = np.load(a.spectrum)
    mag = resize_spectrum(z["magnitude"], (side, side))
    r = study(model, targets, v.methods, judges(p, a.model, head.names, dev), natural,
              v.steps, v.lr, v.n_crops, side, mag, p.seed)
    io.write_json(a.metrics, {"model": a.model, "classes": [head.names[c] for c in classes],
                              "decomposed_set": dec_set, "spectrum": {
                                  "file": a.spectrum, **json.loads(str(z["source"])),
                                  "resized_to": [side, side]}} | r.metrics, digits=4)
    io.write_json(a.timing, {"seconds": time.perf_counter() - t0} | r.timing, digits=3)
    names = [head.names[c][:18] for c in classes]
    k = len(classes)
    for o, obj in enumerate(targets.objectives):
        sl = slice(o * k, (o + 1) * k)
        plots.plot_objective({m: x[sl] for m, x in r.images.items()},
                             {m: None if t is None else t[sl] for m, t in r.transparency.items()},
                             {m: q[sl] for m, q in r.probs.items()}, names,
                             f"{a.model}: {obj} ({v.steps} steps, p = the model's probability)",
                             Path(a.out) / f"{obj}.png")
    plots.plot_exemplars(exemplar_blocks(a, targets, r.images, head, natural, split), names,
                         f"{a.model}: visualizations beside their exemplars",
                         Path(a.out) / "exemplars.png")


def exemplar_blocks(a, targets, images: dict, head, natural: Natural, split) -> list:
    """Per objective: the methods' images and, dataset models, the N_EXEMPLARS training images
    with the largest target value (features_train); the photo model: the class's photo."""
    k = len(targets.classes)
    if a.data:
        t = tables.read(a.features, tables.FEATURES, head.n_classes, head.dim,
                        ["index", "features"])
        top = vis.top_rows(tables.vectors(t["features"]), targets.m, targets.c, N_EXEMPLARS)
        ex = split.images[t["index"].to_numpy()[top]]  # (B, n, H, W, 3)
    else:
        first = [np.flatnonzero(natural.cls == c)[0] for c in targets.classes]
        photo = (natural.images[first].transpose(0, 2, 3, 1) * 255).astype(np.uint8)
        ex = np.tile(photo[:, None], (len(targets.objectives), 1, 1, 1, 1))
    return [(o, {m: x[i * k:(i + 1) * k] for m, x in images.items()}, ex[i * k:(i + 1) * k])
            for i, o in enumerate(targets.objectives)]


if __name__ == "__main__":
    run("visualize", main, "model weights trees spectrum metrics timing out")
