"""Every stage's channel maps on each explained image, the last stage's terminal+ and
Algorithm-1 channels marked, with their shares against random channel sets."""

import time

from _stage import check_declared, run
from fclens.core import io, tables
from fclens.core.errors import FclensError
from fclens.explain import activations, select
from fclens.models.inputs import resolve_device
from fclens.models.registry import build_model
from fclens.plots import activations as plots


def dataset_inputs(model: str, p) -> tuple[str | None, str | None, str | None]:
    """(data, features, influential) of a feature model (its explain test images), or Nones:
    the photographs. activations.models names both kinds, so they are checked as deps."""
    if model not in p.activations.models:
        raise FclensError(f"params.yaml activations.models: {model!r} is not listed "
                          f"({p.activations.models})")
    if model not in p.feature_models:
        return None, None, None
    data, own = f"data/{p.feature_models[model]}", f"data/{model}"
    check_declared("activations", [data, own])
    return data, f"{own}/features_test.parquet", f"{own}/influential.parquet"


def main(a, p):
    t0 = time.perf_counter()
    a.data, a.features, a.influential = dataset_inputs(a.model, p)
    e, dev = p.explain, resolve_device(p.extract.device)
    model = build_model(p.model(a.model), p.seed).to(dev)
    head = tables.read_fc_weights(a.weights)
    a.data and p.class_indices("explain.classes", head.n_classes, a.weights)  # dataset models
    nodes = tables.read_frame(a.trees, tables.TREE_NODES, head.n_classes)
    inp = select.explain_inputs(model, head, e, dev, a.data, a.features, a.influential)
    names = plots.file_stems(inp.names)  # unique: the metrics keys are the file names
    t1 = time.perf_counter()
    r = activations.single_sample_activations(
        model, inp.x, head.w, inp.cls if inp.preds is None else inp.preds, nodes,
        inp.influential, p.activations.max_channels, names, p.seed, a.model)
    t2 = time.perf_counter()
    plots.plot_activation_pages(inp.images, inp.rows, names, r.stages.names,
                                r.stages.maps, r.channels, r.marks, r.numbers, a.model, a.out)
    t3 = time.perf_counter()
    io.write_json(a.metrics, r.metrics, digits=4)
    io.write_json(a.timing, {"seconds": t3 - t0, "seconds_inputs": t1 - t0,
                             "seconds_activations": t2 - t1, "seconds_plots": t3 - t2,
                             "n_images": len(names)}, digits=3)


if __name__ == "__main__":
    run("activations", main, "model weights trees out metrics timing")
