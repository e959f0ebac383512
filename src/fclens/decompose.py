"""Decomposing the Deep, Algorithm 1: influential indices and the decomposed (masked) head.

Tie-break (documented contract): an image's top-k1 features are ordered by activation, ties by
the lower feature index; a class's top-k2 indices by count, ties by the lower feature index.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from .io import FclensError

log = logging.getLogger(__name__)


def check_k(k1: int, k2: int, dim: int, where: str = "params.yaml decompose") -> None:
    for name, k in (("k1", k1), ("k2", k2)):
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= dim:
            raise FclensError(f"{where}.{name}: {k!r}; allowed: an integer in 1..{dim} "
                              f"(the feature dimension)")


def top_k_indices(x: np.ndarray, k: int) -> np.ndarray:
    """(N, D) -> (N, k): indices of the k largest values per row, ties to the lower index."""
    # stable sort of -x keeps equal values in index order; O(N D log D), vectorized
    return np.argsort(-x, axis=1, kind="stable")[:, :k]


def influential_indices(x: np.ndarray, labels: np.ndarray, n_classes: int, k1: int, k2: int
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Algorithm 1. x (N, D) features, labels (N,). Returns indices (C, k2) and counts (C, k2)."""
    n, d = x.shape
    check_k(k1, k2, d)
    top = top_k_indices(x, k1)  # (N, k1)
    flat = (labels.astype(np.int64)[:, None] * d + top).ravel()
    counts = np.bincount(flat, minlength=n_classes * d).reshape(n_classes, d)  # (C, D)
    idx = top_k_indices(counts, k2)  # (C, k2)
    return idx, np.take_along_axis(counts, idx, 1)


def index_mask(idx: np.ndarray, dim: int) -> np.ndarray:
    """(C, k) indices -> (C, D) boolean mask."""
    m = np.zeros((idx.shape[0], dim), dtype=bool)
    np.put_along_axis(m, idx, True, axis=1)
    return m


def decomposed_logits(x: np.ndarray, w: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """logit_c = x[I_c] . W[c, I_c] + b_c for all classes at once: x (N, D) -> (N, C)."""
    return x @ (w * mask).T + b


def decomposed_accuracy_grid(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray,
                             y_te: np.ndarray, w: np.ndarray, b: np.ndarray, k1s: list[int],
                             k2s: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Decomposed test accuracy (no retraining) and union size for every (k1, k2): (K1, K2) each.

    Same indices as `influential_indices` cell by cell: the top-k1 of a stable sort is a prefix
    of the full sort, so the features are sorted once.
    """
    c, d = w.shape
    for k1, k2 in ((min(k1s), min(k2s)), (max(k1s), max(k2s))):
        check_k(k1, k2, d, "params.yaml decompose.grid")
    order = np.argsort(-x_tr, axis=1, kind="stable")[:, :max(k1s)]  # (N, max k1)
    acc = np.zeros((len(k1s), len(k2s)))
    union = np.zeros((len(k1s), len(k2s)), dtype=np.int64)
    for i, k1 in enumerate(k1s):
        flat = (y_tr.astype(np.int64)[:, None] * d + order[:, :k1]).ravel()
        ranked = top_k_indices(np.bincount(flat, minlength=c * d).reshape(c, d), max(k2s))
        for j, k2 in enumerate(k2s):
            mask = index_mask(ranked[:, :k2], d)
            acc[i, j] = accuracy(decomposed_logits(x_te, w, b, mask), y_te)
            union[i, j] = mask.any(0).sum()
    return acc, union


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean())


def train_masked_head(x_tr: np.ndarray, y_tr: np.ndarray, w0: np.ndarray, b0: np.ndarray,
                      mask: np.ndarray, epochs: int, lr: float, batch_size: int, seed: int,
                      optimizer: str = "adam", weight_decay: float = 0.0,
                      on_epoch: Callable[[int, dict], None] | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Retrain only the decomposed head (weights outside the mask stay exactly zero).

    Starts from the original FC weights restricted to the mask. Deterministic given `seed`.
    """
    import torch  # here, not at the top: the other stages using this module need no torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    x = torch.tensor(x_tr, dtype=torch.float32)  # a copy: Parquet-backed arrays are read-only
    y = torch.from_numpy(y_tr.astype(np.int64))
    m = torch.from_numpy(mask.astype(np.float32))
    w = torch.nn.Parameter(torch.from_numpy(w0.astype(np.float32)) * m)
    b = torch.nn.Parameter(torch.from_numpy(b0.astype(np.float32)).clone())
    opt = (torch.optim.Adam([w, b], lr=lr, weight_decay=weight_decay) if optimizer == "adam"
           else torch.optim.SGD([w, b], lr=lr, momentum=0.9, weight_decay=weight_decay))
    for epoch in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        tot, correct = 0.0, 0
        for i in range(0, len(x), batch_size):
            j = perm[i:i + batch_size]
            logits = x[j] @ (w * m).T + b  # (B, C)
            loss = F.cross_entropy(logits, y[j])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += loss.item() * len(j)
            correct += int((logits.argmax(1) == y[j]).sum())
        if on_epoch:
            on_epoch(epoch, {"train_loss": tot / len(x), "train_acc": correct / len(x),
                             "w": (w * m).detach().numpy(), "b": b.detach().numpy()})
    return (w * m).detach().numpy(), b.detach().numpy()


def read_influential(table, n_classes: int) -> np.ndarray:
    """influential.parquet -> (C, k2) feature indices in rank order."""
    t = table.to_pandas().sort_values(["class_index", "rank"])
    idx = t["feature_index"].to_numpy()
    if len(idx) % n_classes or set(t["class_index"]) != set(range(n_classes)):
        raise FclensError(f"influential table has {len(idx)} rows, not k2 rows per each of "
                          f"{n_classes} classes")
    return idx.reshape(n_classes, -1)
