"""Recursive mean splits of each class's FC weights (the blog's "terminal neurons").

A node holding indices I splits into '+' (w[I] >= mean(w[I])) and '-' (the rest). `chain`
follows the original code: the root splits into both signs, then the '+' side keeps splitting
only towards larger weights and the '-' side only towards smaller ones. `full` splits every node.
A node with fewer than `min_size` weights (or constant weights) is not split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fclens.core.constants import TREE_MODES as MODES
from fclens.core.errors import FclensError


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

    @property
    def chain_sign(self) -> str:
        return chain_sign(self.path)


def chain_sign(path: str) -> str:
    """'+' or '-' when `path` is a chain node (the same sign all the way down), else ''.

    The one definition of a chain node, used by the trees, their tables, pictures and CAMs.
    """
    return path[0] if path and path == path[0] * len(path) else ""


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
    return [n for n in nodes if n.terminal and (mode == "full" or not n.path or n.chain_sign)]


def build_trees(w: np.ndarray, mode: str, min_size: int) -> list[list[Node]]:
    return [split_tree(row, mode, min_size, c) for c, row in enumerate(np.asarray(w))]


def chain_rank(w: np.ndarray) -> np.ndarray:
    """(C, D) each class's features read down its '+' chain: exactly a descending sort by weight.

    Every '+' split keeps the values at or above the subset mean, so the deeper a feature stays
    on the chain the larger its weight: the blog's chain terminals are the class's top weights.
    Ties go to the lower feature index. Needs no tree table.
    """
    return np.argsort(-np.asarray(w), axis=1, kind="stable")


def chain_node(nodes: pd.DataFrame, cls: int, sign: str) -> np.ndarray:
    """Indices of class `cls`'s deepest node on the all-`sign` chain (its terminal neurons);
    the root if the tree never split. `nodes` is the tree_nodes table."""
    nodes_c = _class_nodes(nodes, cls)
    on = nodes_c[nodes_c["path"].map(chain_sign) == sign]
    return (on.sort_values("depth") if len(on) else nodes_c[nodes_c["path"] == ""]
            )["indices"].iloc[-1]


def branch_node(nodes: pd.DataFrame, cls: int, sign: str) -> np.ndarray:
    """Indices of the root's `sign` child (weights above / below the row mean)."""
    nodes_c = _class_nodes(nodes, cls)
    node = nodes_c[nodes_c["path"] == sign]
    return (node if len(node) else nodes_c[nodes_c["path"] == ""])["indices"].iloc[0]


def _class_nodes(nodes: pd.DataFrame, cls: int) -> pd.DataFrame:
    nodes_c = nodes[nodes["class_index"] == cls]
    if nodes_c.empty:
        raise FclensError(f"tree_nodes: no nodes for class {cls}; expected one tree per class")
    return nodes_c


def tree_frames(trees: list[list[Node]], w: np.ndarray, names: tuple[str, ...], mode: str
                ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(tree_nodes rows, terminals rows, trees.json metrics) of all classes' trees."""
    nodes = [n for t in trees for n in t]
    has_child = {(n.class_index, n.parent) for n in nodes}
    frame = pd.DataFrame({
        "class_index": [n.class_index for n in nodes], "node_id": [n.node_id for n in nodes],
        "parent": [n.parent for n in nodes], "path": [n.path for n in nodes],
        "depth": [n.depth for n in nodes], "size": [len(n.indices) for n in nodes],
        "mean": [n.mean for n in nodes],
        "is_leaf": [(n.class_index, n.node_id) not in has_child for n in nodes],
        "is_terminal": [n.terminal for n in nodes], "indices": [n.indices for n in nodes]})
    terms = [n for t in trees for n in terminals(t, mode)]
    term = pd.DataFrame({
        "class_index": [n.class_index for n in terms],
        "class_name": [names[n.class_index] for n in terms],
        "branch": [n.path[:1] for n in terms], "path": [n.path for n in terms],
        "feature_index": [n.indices for n in terms],
        "weight": [w[n.class_index, n.indices] for n in terms]})
    depth = np.array([max(n.depth for n in t) for t in trees])
    metrics = {"mode": mode, "n_classes": len(trees), "mean_depth": float(depth.mean()),
               "mean_terminal_size": float(np.mean([len(n.indices) for n in terms])),
               "mean_terminals_per_class": len(terms) / len(trees),
               "mean_nodes_per_class": len(nodes) / len(trees)}
    return frame, term, metrics
