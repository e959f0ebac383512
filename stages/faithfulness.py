"""Faithfulness of Grad-CAM++ maps (deletion / insertion, Average Drop, random-channel control)
and the weight-randomization sanity check; dataset models (--data) or photographs."""

from pathlib import Path

from _stage import run
from fclens import data, explain, extract, faithfulness, io, plots, tables
from fclens.models.registry import build_model


def main(a, p):
    f, dev = p.faithfulness, extract.resolve_device(p.extract.device)
    model = build_model(p.model(a.model), p.seed).to(dev)
    head = tables.read_fc_weights(a.weights)
    nodes = tables.read_frame(a.trees, tables.TREE_NODES, head.n_classes)
    if a.data:  # the first n_per_class test images of every class, explained for their pred
        test = tables.read_features(a.features, head.n_classes, head.dim, ("label", "pred"))
        infl = tables.read_influential(a.influential, head.n_classes, head.dim).idx
        idx = faithfulness.pick_per_class(test.labels, head.n_classes, f.n_per_class)
        x, cls = explain.split_images(model, data.load_split(Path(a.data) / "test.npz"), idx,
                                      dev)[1], test.preds[idx]
    else:  # photographs, explained for their top-1: no dataset, so no influential set
        e = p.explain
        inp = explain.photo_inputs(model, e.photos, e.image_folder, e.max_folder_images,
                                   head.names, dev)
        infl, x, cls = None, inp.x, inp.cls
    s = faithfulness.Settings(**f.model_dump(), seed=p.seed)
    r = faithfulness.evaluate(model, head, nodes, infl, x, cls, s)
    io.write_json(a.metrics, r.metrics, digits=4)
    io.write_json(a.timing, r.timing, digits=3)
    plots.plot_faithfulness_curves(r.fractions, r.mean_curves, f"{a.model}: {f.method} maps, "
                                   f"{r.metrics['n_images']} images", a.plot)


if __name__ == "__main__":
    run("faithfulness", main, "model weights trees metrics timing plot",
        "data features influential", builds_models=True)
