"""Recursive mean splits of each class's FC weights (the blog's "terminal neurons").

A node holding indices I splits into '+' (w[I] >= mean(w[I])) and '-' (the rest). `chain`
follows the original code: the root splits into both signs, then the '+' side keeps splitting
only towards larger weights and the '-' side only towards smaller ones. `full` splits every node.
A node with fewer than `min_size` weights (or constant weights) is not split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .io import FclensError
from .params import TREE_MODES as MODES

@dataclass
class Node:
    class_index: int
    node_id: int
    parent: int  # -1 for the root
    path: str  # '' root, then '+'/'-' per split
    indices: np.ndarray  # (n,) int32, sorted
    mean: float
    terminal: bool = False

    @property
    def depth(self) -> int:
        return len(self.path)


def split_tree(w: np.ndarray, mode: str = "chain", min_size: int = 20,
               class_index: int = 0) -> list[Node]:
    """Nodes of one class's tree (row w of shape (D,)), root first, breadth-first ids."""
    if mode not in MODES:
        raise FclensError(f"trees.mode: {mode!r}; allowed: {', '.join(MODES)}")
    if min_size < 2:
        raise FclensError(f"trees.min_size: expected >= 2, got {min_size}")
    w = np.asarray(w, dtype=np.float64)
    idx = np.arange(len(w), dtype=np.int32)
    nodes = [Node(class_index, 0, -1, "", idx, float(w.mean()))]
    queue = [0]
    while queue:
        node = nodes[queue.pop(0)]
        vals = w[node.indices]
        if len(node.indices) < min_size or np.ptp(vals) == 0:
            node.terminal = True
            continue
        m = vals.mean()
        for sign, sel in (("+", vals >= m), ("-", vals < m)):
            child = Node(class_index, len(nodes), node.node_id, node.path + sign,
                         node.indices[sel], float(vals[sel].mean()))
            nodes.append(child)
            # chain: after the root, only the child that continues the branch's own sign splits
            if mode == "full" or node.path == "" or sign == node.path[0]:
                queue.append(child.node_id)
            else:
                child.terminal = False  # a side branch: kept for the picture, not a terminal
    return nodes


def terminals(nodes: list[Node], mode: str) -> list[Node]:
    """Leaves that end a split chain: in `chain` mode, the deepest '+'*k and '-'*k nodes."""
    return [n for n in nodes if n.terminal and (mode == "full" or len(set(n.path)) <= 1)]


def build_trees(w: np.ndarray, mode: str, min_size: int) -> list[list[Node]]:
    return [split_tree(row, mode, min_size, c) for c, row in enumerate(np.asarray(w))]


def chain_rank(nodes, w: np.ndarray) -> np.ndarray:
    """(C, D) feature order per class by how deep it stays on the '+' chain, then by weight.

    `nodes` is the tree_nodes table (pandas: class_index, path, depth, indices). Because every
    '+' split keeps the values above the subset mean, this order equals sorting by -w within
    the chain; it is read from the trees so that it follows whatever the trees stage produced.
    """
    c, d = w.shape
    depth = np.zeros((c, d))
    pos = nodes[nodes["path"].str.fullmatch(r"\++")]
    for ci, dep, idx in zip(pos["class_index"], pos["depth"], pos["indices"]):
        cur = depth[ci, idx]
        depth[ci, idx] = np.maximum(cur, dep)
    return _lex(depth, w)


def _lex(depth: np.ndarray, w: np.ndarray) -> np.ndarray:
    # sort by depth desc, then weight desc (np.lexsort works on 1-D keys; do it per row at once)
    key = np.argsort(-w, axis=1, kind="stable")
    d_sorted = np.take_along_axis(depth, key, 1)
    order = np.argsort(-d_sorted, axis=1, kind="stable")
    return np.take_along_axis(key, order, 1)
