"""Recursive mean-split trees per class -> tree_nodes.parquet, terminals.parquet, trees.json."""

from pathlib import Path

from _stage import run

from fclens import tables, trees
from fclens.io import write_json
from fclens.plots import plot_sorted_by_branch


def main(a, p):
    head = tables.read_fc_weights(a.weights)
    classes = p.class_indices("ald.plot_classes", head.n_classes, a.weights)
    forest = trees.build_trees(head.w, p.trees.mode, p.trees.min_size)
    nodes, terms, metrics = trees.tree_frames(forest, head.w, head.names, p.trees.mode)
    tables.write_frame(Path(a.out) / "tree_nodes.parquet", nodes, tables.TREE_NODES, len(forest))
    tables.write_frame(Path(a.out) / "terminals.parquet", terms, tables.TERMINALS, len(forest))
    write_json(a.metrics, {**metrics, "min_size": p.trees.min_size}, digits=4)
    plot_sorted_by_branch(head.w, forest, head.names, classes, Path(a.plot))


if __name__ == "__main__":
    run("build_trees", main, "weights out metrics plot")
