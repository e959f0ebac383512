"""Decomposing the Deep, Algorithm 1: influential indices and the decomposed (masked) head.

Tie-break (documented contract): an image's top-k1 features are ordered by activation, ties by
the lower feature index; a class's top-k2 indices by count, ties by the lower feature index.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fclens.core.errors import FclensError
from fclens.core.streaming import FeatureTable
from fclens.core.tables import Features, Head, Influential

if TYPE_CHECKING:
    from fclens.core.params import HeadTraining


def check_k(k1: int, k2: int, dim: int, where: str = "params.yaml decompose") -> None:
    for name, k in (("k1", k1), ("k2", k2)):
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= dim:
            raise FclensError(f"{where}.{name}: {k!r}; allowed: an integer in 1..{dim} "
                              f"(the feature dimension)")


Source = Iterable[Features] | Features  # re-iterable batches (streaming.FeatureTable), or in memory


def batches(src: Source) -> Iterable[Features]:
    """A source's batches: a `Features` record is one batch."""
    return (src,) if isinstance(src, Features) else src


def top_k_indices(x: np.ndarray, k: int) -> np.ndarray:
    """(N, D) -> (N, k): indices of the k largest values per row, largest first, ties to the
    lower index: exactly np.argsort(-x, kind="stable")[:, :k], in O(N D) instead of a sort."""
    n, d = x.shape
    if k >= d:
        return np.argsort(-x, axis=1, kind="stable")[:, :k]
    thr = -np.partition(-x, k - 1, axis=1)[:, k - 1:k]  # (N, 1) each row's k-th largest value
    above = x > thr
    tie = x == thr  # post-ReLU features tie at 0 often: the lowest indices among them are kept
    need = k - above.sum(1, keepdims=True, dtype=np.int32)  # (N, 1), >= 1
    keep = above | (tie & (np.cumsum(tie, axis=1, dtype=np.int32) <= need))  # k per row
    idx = np.nonzero(keep)[1].reshape(n, k)  # (N, k) ascending within each row
    order = np.argsort(-np.take_along_axis(x, idx, 1), axis=1, kind="stable")
    return np.take_along_axis(idx, order, 1)


def class_counts(train: Source, n_classes: int, k1s: list[int]) -> np.ndarray:
    """(K1, C, D): for each k1, how many training images of class c have feature j among their
    top-k1. One streamed pass; the top-k1 of a stable order is a prefix of the top-max(k1)."""
    counts = None
    for f in batches(train):
        n, d = f.x.shape
        if counts is None:
            check_k(max(k1s), 1, d, "params.yaml decompose")
            counts = np.zeros((len(k1s), n_classes, d), np.int64)
        top = top_k_indices(f.x, max(k1s))  # (B, max k1)
        row = f.labels.astype(np.int64)[:, None] * d
        for i, k1 in enumerate(k1s):
            counts[i] += np.bincount((row + top[:, :k1]).ravel(),
                                     minlength=n_classes * d).reshape(n_classes, d)
    if counts is None:
        raise FclensError("training features: 0 rows; expected at least 1")
    return counts


def influential_indices(train: Source, n_classes: int, k1: int, k2: int) -> Influential:
    """Algorithm 1: each class's k2 indices most often among its images' top-k1 features, with
    their counts. Streams `train` once; memory O(C D + batch)."""
    counts = class_counts(train, n_classes, [k1])[0]  # (C, D)
    check_k(k1, k2, counts.shape[1])
    idx = top_k_indices(counts, k2)  # (C, k2)
    return Influential(idx, np.take_along_axis(counts, idx, 1))


def index_mask(idx: np.ndarray, dim: int) -> np.ndarray:
    """(C, k) indices -> (C, D) boolean mask."""
    m = np.zeros((idx.shape[0], dim), dtype=bool)
    np.put_along_axis(m, idx, True, axis=1)
    return m


def class_hits(test: Source, heads: list[tuple[np.ndarray, np.ndarray]]
               ) -> tuple[np.ndarray, np.ndarray]:
    """Correct predictions of each (w (C, D), b (C,)) linear head per true class, (H, C), and
    the images per class (C,), in one streamed pass over `test`."""
    c = heads[0][0].shape[0]
    hits, counts = np.zeros((len(heads), c), np.int64), np.zeros(c, np.int64)
    for f in batches(test):
        for i, (w, b) in enumerate(heads):
            ok = (f.x @ w.T + b).argmax(1) == f.labels
            hits[i] += np.bincount(f.labels[ok], minlength=c)[:c]
        counts += np.bincount(f.labels, minlength=c)[:c]
    return hits, counts


def class_accuracies(test: Source, heads: list[tuple[np.ndarray, np.ndarray]]
                     ) -> tuple[list[float], np.ndarray]:
    """(accuracy of each (w (C, D), b (C,)) linear head on `test`, (H, C) accuracy per true
    class; NaN for a class without test images), in one streamed pass."""
    hits, counts = class_hits(test, heads)
    n = int(counts.sum())
    per = np.divide(hits, counts, out=np.full(hits.shape, np.nan), where=counts > 0)
    return [h / n if n else float("nan") for h in hits.sum(1).tolist()], per


def accuracies(test: Source, heads: list[tuple[np.ndarray, np.ndarray]]) -> list[float]:
    """Accuracy of each linear head on `test`, in one streamed pass (`class_accuracies`)."""
    return class_accuracies(test, heads)[0]


def decomposed_accuracy_grid(train: Source, test: Source, head: Head, k1s: list[int],
                             k2s: list[int]) -> tuple[np.ndarray, np.ndarray, float]:
    """Decomposed test accuracy (no retraining) and union size for every (k1, k2): (K1, K2)
    each, and the original head's accuracy. One pass over train, one over test.

    Same indices as `influential_indices` cell by cell (`class_counts` shares the sort)."""
    c, d = head.w.shape
    for k1, k2 in ((min(k1s), min(k2s)), (max(k1s), max(k2s))):
        check_k(k1, k2, d, "params.yaml decompose.grid")
    counts = class_counts(train, c, k1s)  # (K1, C, D)
    masks = [index_mask(top_k_indices(counts[i], k2), d) for i in range(len(k1s)) for k2 in k2s]
    acc = accuracies(test, [(head.w, head.b)] + [(head.w * m, head.b) for m in masks])
    union = np.array([m.any(0).sum() for m in masks]).reshape(len(k1s), len(k2s))
    return np.array(acc[1:]).reshape(len(k1s), len(k2s)), union, acc[0]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread inside the block. Head training runs many tiny tensor ops, for which
    a second OpenMP thread only waits: on a busy 2-core CPU each op then costs a scheduler slice
    (~20 ms, 20x slower), and one thread also makes the results independent of the core count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_matrix(train: Source, stack: contextlib.ExitStack) -> tuple[np.ndarray, np.ndarray]:
    """(x (N, D) float32, labels (N,)) for minibatch training. One in-memory batch is used as
    is; a streamed table is copied once into a float32 memory map in a temporary directory
    ($TMPDIR), so the pages the OS keeps are a cache, not the process's own memory."""
    parts = batches(train)
    if isinstance(parts, (tuple, list)) and len(parts) == 1:
        return parts[0].x, parts[0].labels
    n = len(parts) if isinstance(parts, FeatureTable) else sum(len(f.labels) for f in parts)
    x = y = None
    i = 0
    for f in parts:
        if x is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="fclens-train-"))
            x = np.lib.format.open_memmap(Path(tmp) / "x.npy", "w+", np.float32,
                                          (n, f.x.shape[1]))
            y = np.empty(n, np.int64)
        x[i:i + len(f.labels)], y[i:i + len(f.labels)] = f.x, f.labels
        i += len(f.labels)
    if x is None:
        raise FclensError("training features: 0 rows; expected at least 1")
    return x, y


def train_masked_heads(train: Source, head: Head, masks: np.ndarray, cfg: HeadTraining, seed: int,
                       on_epoch: Callable[[int, dict], None] | None = None) -> list[Head]:
    """Retrain K masked copies of the head at once (masks (K, C, D) bool); weights outside each
    mask stay exactly zero. Each starts from the original FC weights restricted to its mask.

    All K share one minibatch order (seeded by `seed`) and each has its own loss term, so
    head k ends bit-identical to training it alone. Minibatches are gathered from memory or a
    memory map (`train_matrix`), never a full float64 copy. Deterministic given `seed`.
    """
    import torch  # here, not at the top: the other stages using this module need no torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    with contextlib.ExitStack() as stack, one_thread():
        x, y_np = train_matrix(train, stack)
        y = torch.from_numpy(y_np.astype(np.int64))
        m = torch.from_numpy(masks.astype(np.float32))  # (K, C, D)
        w = torch.nn.Parameter(torch.from_numpy(head.w.astype(np.float32)) * m)  # (K, C, D)
        b = torch.nn.Parameter(torch.from_numpy(head.b.astype(np.float32))
                               .repeat(len(masks), 1))  # (K, C)
        lr, batch_size = cfg.lr, cfg.batch_size
        opt = (torch.optim.Adam([w, b], lr=lr) if cfg.optimizer == "adam"
               else torch.optim.SGD([w, b], lr=lr, momentum=0.9))
        n, k = len(y), len(masks)
        for epoch in range(cfg.epochs):
            perm = torch.randperm(n, generator=g)
            tot, correct = np.zeros(k), np.zeros(k, np.int64)
            for i in range(0, n, batch_size):
                j = perm[i:i + batch_size]
                xb = torch.from_numpy(np.asarray(x[j.numpy()], np.float32))  # (B, D)
                logits = [xb @ (w[h] * m[h]).T + b[h] for h in range(k)]  # K x (B, C)
                losses = [F.cross_entropy(lg, y[j]) for lg in logits]
                opt.zero_grad(set_to_none=True)
                torch.stack(losses).sum().backward()  # independent heads: separate gradients
                opt.step()
                for h in range(k):
                    tot[h] += losses[h].item() * len(j)
                    correct[h] += int((logits[h].argmax(1) == y[j]).sum())
            if on_epoch:
                on_epoch(epoch, {"train_loss": (tot / n).tolist(),
                                 "train_acc": (correct / n).tolist(), "heads": _heads(w, m, b,
                                                                                     head)})
    return _heads(w, m, b, head)


def _heads(w, m, b, head: Head) -> list[Head]:
    wm, bb = (w * m).detach().numpy(), b.detach().numpy()
    return [Head(wm[h], bb[h], head.names) for h in range(len(wm))]


def decompose(train: Source, test: Source, head: Head, infl: Influential, cfg: HeadTraining,
              seed: int, on_epoch: Callable[[int, dict], None] | None = None) -> dict:
    """The decomposed head on the test split, before and after retraining it on train."""
    mask = index_mask(infl.idx, head.dim)
    trained = train_masked_heads(train, head, mask[None], cfg, seed, on_epoch)[0]
    (acc0, acc_dec, acc_ret), per = class_accuracies(
        test, [(head.w, head.b), (head.w * mask, head.b), (trained.w, trained.b)])

    def rel(a: float) -> float:  # a random model can score 0
        return a / acc0 if acc0 > 0 else float("nan")

    return {"k2": infl.idx.shape[1], "acc_original": acc0,
            "acc_decomposed": acc_dec, "acc_decomposed_retrained": acc_ret,
            "rel_acc": rel(acc_dec), "rel_acc_retrained": rel(acc_ret),
            "union_size": int(mask.any(0).sum()), "feature_dim": head.dim, "epochs": cfg.epochs,
            # (C,) each, test accuracy per true class (null: no test image of the class)
            "per_class": {k: [None if np.isnan(v) else float(v) for v in row] for k, row in zip(
                ("acc_original", "acc_decomposed", "acc_decomposed_retrained"), per)}}


def k_grid(train: Source, test: Source, head: Head, k1s: list[int], k2s: list[int]
           ) -> tuple[dict, np.ndarray, list[dict]]:
    """(metrics, (K1, K2) accuracy, CSV rows) of the decomposed head over the k1 x k2 grid."""
    acc, union, acc0 = decomposed_accuracy_grid(train, test, head, k1s, k2s)
    best = np.unravel_index(np.argmax(acc), acc.shape)
    rows = [dict(k1=k1, k2=k2, acc_decomposed=acc[i, j], union_size=union[i, j])
            for i, k1 in enumerate(k1s) for j, k2 in enumerate(k2s)]
    return {
        "k1": k1s, "k2": k2s, "acc_original": acc0,
        "acc_decomposed": {f"k1={k1}": dict(zip((f"k2={k}" for k in k2s), acc[i].tolist()))
                           for i, k1 in enumerate(k1s)},
        "best_k1": k1s[best[0]], "best_k2": k2s[best[1]], "best_acc_decomposed": acc.max(),
    }, acc, rows


def decompose_with_live_curves(train: Source, test: Source, head: Head, infl: Influential,
                               cfg: HeadTraining, seed: int, live_dir: str) -> dict:
    """`decompose` with DVCLive curves per retraining epoch, written atomically to live_dir."""
    from dvclive import Live

    from fclens.core.io import atomic_dir

    with atomic_dir(live_dir) as tmp, Live(dir=str(tmp), save_dvc_exp=False, dvcyaml=None,
                                          report=None) as live:
        def on_epoch(epoch: int, info: dict) -> None:
            for k in ("train_loss", "train_acc"):
                live.log_metric(k, info[k][0])
            h = info["heads"][0]
            live.log_metric("test_acc", accuracies(test, [(h.w, h.b)])[0])
            live.next_step()

        return decompose(train, test, head, infl, cfg, seed, on_epoch)
