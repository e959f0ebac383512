"""Grad-CAM++ / Smooth Grad-CAM++ grids of class logits and channel-set targets."""


from _stage import run
from fclens.core import io, tables
from fclens.explain import cams as explain
from fclens.explain import select
from fclens.models.inputs import resolve_device
from fclens.models.registry import build_model
from fclens.plots import maps


def main(a, p):
    e, dev = p.explain, resolve_device(p.extract.device)
    model = build_model(p.model(a.model), p.seed).to(dev)
    head = tables.read_fc_weights(a.weights)
    a.data and p.class_indices("explain.classes", head.n_classes, a.weights)  # dataset models
    nodes = tables.read_frame(a.trees, tables.TREE_NODES, head.n_classes)
    inp = select.explain_inputs(model, head, e, dev, a.data, a.features, a.influential)
    r = explain.explain(model, head, nodes, inp, e.methods, e.n_samples, e.sigma, p.seed)
    maps.plot_cam_grids(inp.images, r.maps, inp.rows, r.targets, a.model, a.out)
    io.write_json(a.metrics, r.metrics, digits=3)
    io.write_json(a.timing, r.timing, digits=3)


if __name__ == "__main__":
    run("explain", main, "model weights trees out metrics timing", "data features influential")
