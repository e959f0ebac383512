"""Faithfulness of Grad-CAM++ maps (deletion / insertion, Average Drop, random-channel control)
and the weight-randomization sanity check; dataset models (--data) or photographs."""

import numpy as np

from _stage import run
from fclens.core import io, tables
from fclens.explain import faithfulness, select
from fclens.models.inputs import resolve_device
from fclens.models.registry import build_model
from fclens.plots import maps


def main(a, p):
    f, dev = p.faithfulness, resolve_device(p.extract.device)
    model = build_model(p.model(a.model), p.seed).to(dev)
    head = tables.read_fc_weights(a.weights)
    nodes = tables.read_frame(a.trees, tables.TREE_NODES, head.n_classes)
    n = f.n_per_class  # dataset models: the first n test images of every class, for their pred
    inp = select.stage_inputs(model, head, p.explain, dev, a.data, a.features, a.influential,
                              np.full((head.n_classes, 2), n),
                              lambda y, pred: select.pick_per_class(y, head.n_classes, n))
    cls = inp.cls if inp.preds is None else inp.preds
    r = faithfulness.evaluate(model, head, nodes, inp.influential, inp.x, cls,
                              f, p.seed)
    io.write_json(a.metrics, r.metrics, digits=4)
    io.write_json(a.timing, r.timing, digits=3)
    maps.plot_faithfulness_curves(r.fractions, r.mean_curves, f"{a.model}: {f.method} maps, "
                                   f"{r.metrics['n_images']} images", a.plot)


if __name__ == "__main__":
    run("faithfulness", main, "model weights trees metrics timing plot",
        "data features influential")
