"""Adversarial samples read through the last layer: L-inf PGD at every radius, a stronger attack,
the exact margin decomposition of each broken image, dense against sparse heads."""

from pathlib import Path

import numpy as np
import torch

from _stage import check_declared, run
from fclens.analysis.decompose import index_mask
from fclens.analysis.trees import chain_node
from fclens.core import io, tables
from fclens.core.errors import FclensError
from fclens.datasets.splits import load_split
from fclens.explain.adversarial_study import study
from fclens.explain.select import pick_per_class
from fclens.models.inputs import resolve_device
from fclens.models.registry import build_model
from fclens.plots import robustness


def sparse_heads(model: str, p, dim: int, n_classes: int) -> dict:
    """name -> (w (C, D), b (C,)): algorithm1's refit head at adversarial.sparse_k and the
    elastic net's selected head, from sparsify's table."""
    if model not in p.adversarial.sparse_models:
        return {}
    path = f"data/{model}/sparse_heads.parquet"
    check_declared("adversarial", [path])
    t = tables.read_frame(path, tables.SPARSE_HEADS, n_classes)
    want = {"algorithm1": ("algorithm1_refit", p.adversarial.sparse_k),
            "elastic_net": ("elastic_net_selected", None)}
    out = {}
    for name, (head, k) in want.items():
        rows = t[(t["head"] == head) & ((t["k"] == k) if k is not None else True)]
        if len(rows) != n_classes:
            ks = sorted(set(t.loc[t["head"] == head, "k"]))
            if k is None:
                raise FclensError(f"{path}: no {head} head for every class; expected "
                                  f"sparsify.methods to include {name}")
            raise FclensError(
                f"{path}: no {head} head at k={k} for every class (params.yaml "
                f"adversarial.sparse_k {k}; the table has k {ks}); expected sparsify.methods to "
                f"include {name} and sparsify's k grid to hold sparse_k")
        rows = rows.sort_values("class_index")
        w = np.stack(rows["weight"].to_numpy()).astype(np.float32)
        if w.shape != (n_classes, dim):
            raise FclensError(f"{path}: {head} weights {w.shape}; expected ({n_classes}, {dim})")
        out[name] = (w, rows["bias"].to_numpy(np.float32))
    return out


def main(a, p):
    s, dev = p.adversarial, resolve_device(p.extract.device)
    if a.model not in s.models:
        raise FclensError(f"params.yaml adversarial.models: {a.model!r} is not listed "
                          f"({s.models})")
    dataset = p.feature_models[a.model]
    check_declared("adversarial", [f"data/{dataset}/test.npz", f"data/{dataset}/train.npz"])
    head = tables.read_fc_weights(a.weights)
    split = load_split(Path("data") / dataset / "test.npz")
    if not hasattr(split, "images"):
        raise FclensError(f"params.yaml adversarial.models: {a.model} reads dataset {dataset}, "
                          f"an image folder; expected an archive dataset (decoded test images)")
    if missing := sorted(set(range(head.n_classes)) - set(split.labels.tolist())):
        raise FclensError(f"params.yaml adversarial.n_per_class: data/{dataset}/test.npz has no "
                          f"image of class {missing[:5]} ({len(missing)} classes); expected at "
                          f"least one test image of every class of {a.model}")
    idx = pick_per_class(split.labels, head.n_classes, s.n_per_class)
    x = torch.from_numpy(split.images[idx]).permute(0, 3, 1, 2).float().div(255).to(dev)
    infl = tables.read_influential(a.influential, head.n_classes, head.dim)
    nodes = tables.read_frame(a.trees, tables.TREE_NODES, head.n_classes)
    terminals = np.zeros((head.n_classes, head.dim), bool)
    for c in range(head.n_classes):
        terminals[c, np.asarray(chain_node(nodes, c, "+"), dtype=np.int64)] = True
    model = build_model(p.model(a.model), p.seed).to(dev).eval()
    r = study(model, head, x, split.labels[idx].astype(np.int64),
              index_mask(infl.idx, head.dim), terminals,
              sparse_heads(a.model, p, head.dim, head.n_classes), s, p.seed)
    io.write_json(a.metrics, r.metrics, digits=4)
    io.write_json(a.timing, r.timing, digits=3)
    stats = tables.read_frame(a.exemplars, tables.FEATURE_STATS, head.n_classes,
                              columns=["feature_index", "top_index"]).sort_values("feature_index")
    if not np.array_equal(stats["feature_index"].to_numpy(), np.arange(head.dim)):
        raise FclensError(f"{a.exemplars}: expected one row per feature 0..{head.dim - 1}")
    train = load_split(Path("data") / dataset / "train.npz")
    robustness.plot_curves(r.metrics, f"{a.model}: accuracy under L-inf PGD", a.curve)
    robustness.plot_examples(r.examples, head.names, stats["top_index"].to_numpy(), train.images,
                             f"{a.model}: PGD at eps={r.examples.get('eps')}/255", a.plot)


if __name__ == "__main__":
    run("adversarial", main, "model weights trees influential exemplars metrics timing plot curve")
