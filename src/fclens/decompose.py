"""Decomposing the Deep, Algorithm 1: influential indices and the decomposed (masked) head.

Tie-break (documented contract): an image's top-k1 features are ordered by activation, ties by
the lower feature index; a class's top-k2 indices by count, ties by the lower feature index.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import FclensError
from .tables import Features, Head, Influential


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
                        ) -> Influential:
    """Algorithm 1. x (N, D) features, labels (N,) -> each class's k2 indices and counts."""
    n, d = x.shape
    check_k(k1, k2, d)
    top = top_k_indices(x, k1)  # (N, k1)
    flat = (labels.astype(np.int64)[:, None] * d + top).ravel()
    counts = np.bincount(flat, minlength=n_classes * d).reshape(n_classes, d)  # (C, D)
    idx = top_k_indices(counts, k2)  # (C, k2)
    return Influential(idx, np.take_along_axis(counts, idx, 1))


def index_mask(idx: np.ndarray, dim: int) -> np.ndarray:
    """(C, k) indices -> (C, D) boolean mask."""
    m = np.zeros((idx.shape[0], dim), dtype=bool)
    np.put_along_axis(m, idx, True, axis=1)
    return m


def decomposed_logits(x: np.ndarray, w: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """logit_c = x[I_c] . W[c, I_c] + b_c for all classes at once: x (N, D) -> (N, C)."""
    return x @ (w * mask).T + b


def decomposed_accuracy_grid(train: Features, test: Features, head: Head, k1s: list[int],
                             k2s: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Decomposed test accuracy (no retraining) and union size for every (k1, k2): (K1, K2) each.

    Same indices as `influential_indices` cell by cell: the top-k1 of a stable sort is a prefix
    of the full sort, so the features are sorted once.
    """
    (c, d), (x_tr, y_tr), (x_te, y_te) = head.w.shape, (train.x, train.labels), (test.x,
                                                                              test.labels)
    w, b = head.w, head.b
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
    """The one accuracy of fclens: share of rows whose argmax is the label (NaN if no rows)."""
    return float((logits.argmax(1) == labels).mean()) if len(labels) else float("nan")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    lr: float
    batch_size: int
    seed: int
    optimizer: str = "adam"  # adam | sgd (momentum 0.9)
    weight_decay: float = 0.0


def train_masked_head(train: Features, head: Head, mask: np.ndarray, cfg: TrainConfig,
                      on_epoch: Callable[[int, dict], None] | None = None) -> Head:
    """Retrain only the decomposed head (weights outside the mask stay exactly zero).

    Starts from the original FC weights restricted to the mask. Deterministic given `cfg.seed`.
    """
    import torch  # here, not at the top: the other stages using this module need no torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(cfg.seed)
    x = torch.tensor(train.x, dtype=torch.float32)  # a copy: Parquet-backed arrays are read-only
    y = torch.from_numpy(train.labels.astype(np.int64))
    m = torch.from_numpy(mask.astype(np.float32))
    w = torch.nn.Parameter(torch.from_numpy(head.w.astype(np.float32)) * m)
    b = torch.nn.Parameter(torch.from_numpy(head.b.astype(np.float32)).clone())
    lr, wd, batch_size = cfg.lr, cfg.weight_decay, cfg.batch_size
    opt = (torch.optim.Adam([w, b], lr=lr, weight_decay=wd) if cfg.optimizer == "adam"
           else torch.optim.SGD([w, b], lr=lr, momentum=0.9, weight_decay=wd))
    for epoch in range(cfg.epochs):
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
                             "head": Head((w * m).detach().numpy(), b.detach().numpy(),
                                          head.names)})
    return Head((w * m).detach().numpy(), b.detach().numpy(), head.names)


def decompose(train: Features, test: Features, head: Head, infl: Influential, cfg: TrainConfig,
              on_epoch: Callable[[int, dict], None] | None = None) -> dict:
    """The decomposed head on the test split, before and after retraining it on train."""
    mask = index_mask(infl.idx, head.dim)
    acc0 = accuracy(head.logits(test.x), test.labels)
    acc_dec = accuracy(decomposed_logits(test.x, head.w, head.b, mask), test.labels)
    trained = train_masked_head(train, head, mask, cfg, on_epoch)
    acc_ret = accuracy(trained.logits(test.x), test.labels)

    def rel(a: float) -> float:  # a random model can score 0
        return a / acc0 if acc0 > 0 else float("nan")

    return {"k2": infl.idx.shape[1], "acc_original": acc0,
            "acc_decomposed": acc_dec, "acc_decomposed_retrained": acc_ret,
            "rel_acc": rel(acc_dec), "rel_acc_retrained": rel(acc_ret),
            "union_size": int(mask.any(0).sum()), "feature_dim": head.dim, "epochs": cfg.epochs}


def k_grid(train: Features, test: Features, head: Head, k1s: list[int], k2s: list[int]
           ) -> tuple[dict, np.ndarray, list[dict]]:
    """(metrics, (K1, K2) accuracy, CSV rows) of the decomposed head over the k1 x k2 grid."""
    acc, union = decomposed_accuracy_grid(train, test, head, k1s, k2s)
    best = np.unravel_index(np.argmax(acc), acc.shape)
    rows = [dict(k1=k1, k2=k2, acc_decomposed=acc[i, j], union_size=union[i, j])
            for i, k1 in enumerate(k1s) for j, k2 in enumerate(k2s)]
    return {
        "k1": k1s, "k2": k2s, "acc_original": accuracy(head.logits(test.x), test.labels),
        "acc_decomposed": {f"k1={k1}": dict(zip((f"k2={k}" for k in k2s), acc[i].tolist()))
                           for i, k1 in enumerate(k1s)},
        "best_k1": k1s[best[0]], "best_k2": k2s[best[1]], "best_acc_decomposed": acc.max(),
    }, acc, rows


def decompose_logged(train: Features, test: Features, head: Head, infl: Influential,
                     cfg: TrainConfig, live_dir: str) -> dict:
    """`decompose` with DVCLive curves per retraining epoch, written atomically to live_dir."""
    from dvclive import Live

    from .io import atomic_dir

    with atomic_dir(live_dir) as tmp, Live(dir=str(tmp), save_dvc_exp=False, dvcyaml=None,
                                          report=None) as live:
        def on_epoch(epoch: int, info: dict) -> None:
            for k in ("train_loss", "train_acc"):
                live.log_metric(k, info[k])
            live.log_metric("test_acc", accuracy(info["head"].logits(test.x), test.labels))
            live.next_step()

        return decompose(train, test, head, infl, cfg, on_epoch)
