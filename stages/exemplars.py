"""Dataset exemplars (top-9 training images) and activation distributions of each class's
Algorithm-1 influential and terminal+ features, streamed over the training features."""

from pathlib import Path

import pandas as pd

from _stage import run
from fclens.analysis import trees
from fclens.core import io, tables
from fclens.datasets.splits import load_split
from fclens.explain import exemplars
from fclens.plots import maps


def main(a, p):
    head = tables.read_fc_weights(a.weights)
    classes = p.class_indices("explain.classes", head.n_classes, a.weights)
    infl = tables.read_influential(a.influential, head.n_classes, head.dim)
    split = load_split(Path(a.data) / "train.npz")
    batches = tables.iter_features(a.features, head.n_classes, head.dim, exemplars.BATCH_ROWS)
    top = trees.chain_rank(head.w)[:, :exemplars.N_TERMINAL]  # terminal+: the top weights
    r = exemplars.exemplars(batches, infl, top, head.n_classes, classes, split.labels,
                            a.features, dim=head.dim)
    s, names = r.shown, [head.names[c] for c in classes]
    group = f"classes {', '.join(names)} (explain.classes)"
    maps.plot_exemplars(exemplars.thumbnails(split, s.top_idx), s.cls, s.labels, head.names,
                         f"{a.model}: the {exemplars.N_TOP} training images of highest activation"
                         f" per feature; {group}", a.exemplars)
    maps.plot_activation_hists(s.hist, s.hist_r, s.cls, s.labels, head.names,
                                f"{a.model}: activations on the class's training images vs the "
                                f"other classes'; {group}", a.activations)
    io.write_json(a.metrics, r.metrics, digits=4)
    tables.write_frame(a.stats, pd.DataFrame({k: list(v) if v.ndim > 1 else v
                                              for k, v in r.features.items()}),
                       tables.FEATURE_STATS, head.n_classes)


if __name__ == "__main__":
    run("exemplars", main,
        "model weights influential features data exemplars activations metrics stats")
