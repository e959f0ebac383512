"""Recursive mean-split trees per class -> tree_nodes.parquet, terminals.parquet, trees.json."""

from _stage import run
from fclens.analysis import trees
from fclens.core import io, tables
from fclens.plots import weights


def main(a, p):
    head = tables.read_fc_weights(a.weights)
    classes = p.class_indices("ald.plot_classes", head.n_classes, a.weights)
    forest = trees.build_trees(head.w, p.trees.mode, p.trees.min_size)
    nodes, terms, metrics = trees.tree_frames(forest, head.w, head.names, p.trees.mode)
    tables.write_trees(a.out, nodes, terms, head.n_classes)
    io.write_json(a.metrics, {**metrics, "min_size": p.trees.min_size}, digits=4)
    weights.plot_sorted_by_branch(head.w, forest, head.names, classes, a.plot)


if __name__ == "__main__":
    run("build_trees", main, "weights out metrics plot")
