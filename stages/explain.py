"""Grad-CAM++ / Smooth Grad-CAM++ grids of class logits and channel-set targets: test images
of dataset models (--data), sample photographs for the others."""

from pathlib import Path

from _stage import run

from fclens import explain as ex
from fclens import tables
from fclens.extract import resolve_device
from fclens.io import write_json
from fclens.models.registry import build_model
from fclens.plots import plot_cam_grids


def main(a, p):
    e, dev = p.explain, resolve_device(p.extract.device)
    model = build_model(p.model(a.model), p.seed).to(dev)
    head = tables.read_fc_weights(a.weights)
    nodes = tables.read_frame(a.trees, tables.TREE_NODES, head.n_classes)
    inp = ex.stage_inputs(model, head, e, dev, a.data, a.features, a.influential)
    r = ex.explain(model, head, nodes, inp, e.methods, e.n_samples, e.sigma, p.seed)
    plot_cam_grids(inp.images, r.maps, inp.rows, r.targets, a.model, Path(a.out))
    write_json(a.metrics, r.metrics, digits=3)
    write_json(a.timing, r.timing, digits=3)


if __name__ == "__main__":
    run("explain", main, "model weights trees out metrics timing", "data features influential",
        builds_models=True)
