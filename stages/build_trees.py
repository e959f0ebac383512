"""Recursive mean-split trees per class -> tree_nodes.parquet, terminals.parquet, trees.json."""

from pathlib import Path

import numpy as np
import pyarrow as pa
from _stage import run

from fclens.tables import read_fc_weights
from fclens.io import read_table, write_json, write_table
from fclens.plots import plot_sorted_by_branch
from fclens.trees import build_trees, terminals


def main(args, p):
    w, _, names = read_fc_weights(read_table(args.weights))
    mode, min_size = p["trees"]["mode"], p["trees"]["min_size"]
    trees = build_trees(w, mode, min_size)
    nodes = [n for t in trees for n in t]
    has_child = {(n.class_index, n.parent) for n in nodes}
    table = pa.table({
        "class_index": pa.array([n.class_index for n in nodes], pa.int32()),
        "node_id": pa.array([n.node_id for n in nodes], pa.int32()),
        "parent": pa.array([n.parent for n in nodes], pa.int32()),
        "path": [n.path for n in nodes],
        "depth": pa.array([n.depth for n in nodes], pa.int16()),
        "size": pa.array([len(n.indices) for n in nodes], pa.int32()),
        "mean": pa.array([n.mean for n in nodes], pa.float32()),
        "is_leaf": [(n.class_index, n.node_id) not in has_child for n in nodes],
        "is_terminal": [n.terminal for n in nodes],
        "indices": pa.array([n.indices for n in nodes], pa.list_(pa.int32())),
    })
    terms = [(t, n) for t in trees for n in terminals(t, mode)]
    term_table = pa.table({
        "class_index": pa.array([n.class_index for _, n in terms], pa.int32()),
        "class_name": [names[n.class_index] for _, n in terms],
        "branch": ["+" if n.path.startswith("+") else "-" if n.path else "" for _, n in terms],
        "path": [n.path for _, n in terms],
        "feature_index": pa.array([n.indices for _, n in terms], pa.list_(pa.int32())),
        "weight": pa.array([w[n.class_index, n.indices] for _, n in terms], pa.list_(pa.float32())),
    })
    out = Path(args.out)
    write_table(out / "tree_nodes.parquet", table)
    write_table(out / "terminals.parquet", term_table)
    depth = np.array([max(n.depth for n in t) for t in trees])
    write_json(args.metrics, {
        "mode": mode, "min_size": min_size, "n_classes": len(trees),
        "mean_depth": float(depth.mean()),
        "mean_terminal_size": float(np.mean([len(n.indices) for _, n in terms])),
        "mean_terminals_per_class": len(terms) / len(trees),
        "mean_nodes_per_class": len(nodes) / len(trees),
    }, digits=4)
    plot_sorted_by_branch(w, trees, names, p["ald"]["plot_classes"], Path(args.plot))


if __name__ == "__main__":
    run("build_trees", main, lambda ap: [ap.add_argument(f"--{k}", required=True)
                                         for k in ("weights", "out", "metrics", "plot")])
