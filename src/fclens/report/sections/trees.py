"""Split trees and terminal neurons: metrics/<m>/trees.json and plots/<m>/trees/."""

from __future__ import annotations

from fclens.report.doc import Inputs
from fclens.report.fmt import figure, num, table

CHAIN_NOTE = (
    "**The chain terminals are the class's top weights.** A split sends the weights at or above "
    "the node's mean to '+' and the rest to '-', so every '+' weight is larger than every '-' "
    "weight of the node. Following '+' from the root keeps the largest weights at every step: "
    "the terminal of the '+' chain (path `+…+`, `terminal+` under Visual explanations) is "
    "exactly the class's n largest weights, n being its size, and reading features down the "
    "'+' chain (`trees.chain_rank`) is a descending sort by weight. So the blog's chain "
    "terminals are the class's top-weighted features, and the '-' chain's terminal its most "
    "negative ones: the trees select nothing that sorting the weight row would not.")


TREE_CAPTIONS = {
    "sorted_by_branch": "each plotted class's weights in ascending order, coloured by how deep "
                        "they stay on the '+' (red) or '-' (blue) chain.",
}


def section_trees(inp: Inputs) -> list[str]:
    rows = []
    for m in inp.models:
        t = inp.json(f"metrics/{m}/trees.json")
        rows.append([m, t["mode"], str(t["min_size"]), str(t["n_classes"]), num(t["mean_depth"]),
                     num(t["mean_nodes_per_class"]), num(t["mean_terminals_per_class"]),
                     num(t["mean_terminal_size"])])
    lines = (["Each class's weight row split recursively at the mean (the blog's \"terminal "
              "neurons\"), per `trees.mode` and `trees.min_size`.", ""]
             + table(["model", "mode", "min size", "classes", "mean depth", "nodes per class",
                      "terminals per class", "mean terminal size"], rows)
             + [CHAIN_NOTE, ""])
    for m in inp.models:
        for stem, src in inp.pngs(f"plots/{m}/trees"):
            lines += figure(src, f"{m}: {TREE_CAPTIONS.get(stem, stem)}")
    return lines
