"""csg: class-specific gates (Liang et al., ECCV 2020), head only.

Gates G = sigmoid(theta) in (0, 1)^{C x D} on the pooled features (gating a channel before or
after the average pooling is the same), trained with the FC layer on the cached features,
alternating batches between the standard path and the gated path (each image gated by its own
class's row of G) with an L1 penalty on G; thresholded to per-class sets. One run per penalty,
all runs in one batched training; grid k takes the largest penalty whose mean open gates per
class is at least k."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import numpy as np

from fclens.analysis.ablate import jaccard
from fclens.analysis.decompose import Source, one_thread, train_matrix
from fclens.analysis.sparsify.selection import Context, Sets, per_k
from fclens.core.tables import Head

if TYPE_CHECKING:
    from fclens.core.params import SparsifyCsg

CSG_INIT_LOGIT = 2.0  # gates start open (sigmoid(2) = 0.88), as the paper's start at 1


def penalties(cfg: SparsifyCsg) -> list[float]:
    """n_penalties L1 weights, log-spaced from penalty_min to penalty_max."""
    return np.geomspace(cfg.penalty_min, cfg.penalty_max, cfg.n_penalties).tolist()


def csg_gates(fit: Source, head: Head, cfg: SparsifyCsg, seed: int) -> np.ndarray:
    """(P, C, D) gate values of one head-only CSG run per penalty, trained together.

    Each run has its own gates and its own copy of the FC layer (started from the original).
    Batches alternate: even steps the standard path (x -> FC), odd steps the gated path
    (x * G[y] -> FC, G[y] the image's own class's gates) plus penalty * mean_c sum_j G[c, j].
    Minibatches are drawn (seeded) from all fit rows, as in `train_masked_heads`.
    """
    import torch
    import torch.nn.functional as F

    p, c = cfg.n_penalties, head.n_classes
    g = torch.Generator().manual_seed(seed)
    theta = torch.full((p, *head.w.shape), CSG_INIT_LOGIT, requires_grad=True)
    w = torch.tensor(np.broadcast_to(head.w, (p, *head.w.shape)), dtype=torch.float32,
                     requires_grad=True)
    b = torch.tensor(np.broadcast_to(head.b, (p, c)), dtype=torch.float32, requires_grad=True)
    pen = torch.tensor(penalties(cfg), dtype=torch.float32)
    opt = torch.optim.Adam([theta, w, b], lr=cfg.lr)
    step = 0
    with contextlib.ExitStack() as stack, one_thread():
        x, y_np = train_matrix(fit, stack)  # (N, D) in memory or a memory map
        y = torch.from_numpy(y_np.astype(np.int64))
        for _ in range(cfg.epochs):
            perm = torch.randperm(len(y), generator=g)
            for i in range(0, len(y), cfg.batch_size):
                j = perm[i:i + cfg.batch_size]
                xb, yb = torch.from_numpy(np.asarray(x[j.numpy()], np.float32)), y[j]
                if step % 2 == 0:  # standard path
                    logits = torch.einsum("bd,pcd->pbc", xb, w) + b[:, None]
                    loss = F.cross_entropy(logits.reshape(-1, c), yb.repeat(p)) * p
                else:  # gated path; the runs' losses are summed (independent parameters)
                    gates = torch.sigmoid(theta)  # (P, C, D)
                    logits = torch.einsum("pbd,pcd->pbc", xb * gates[:, yb], w) + b[:, None]
                    loss = (F.cross_entropy(logits.reshape(-1, c), yb.repeat(p)) * p
                            + (pen * gates.sum(2).mean(1)).sum())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
    return torch.sigmoid(theta).detach().numpy()


def section(cfg: SparsifyCsg, nec: np.ndarray | None = None,
            jaccard_vs_algorithm1: list[float | None] | None = None) -> dict:
    """metrics `csg` (present, with None values, when csg is not run)."""
    return {"jaccard_vs_algorithm1": jaccard_vs_algorithm1, "whole_network": None,
            "head_only": nec is not None, "threshold": cfg.threshold,
            "penalties": penalties(cfg), "nec_by_penalty": None if nec is None else nec.tolist()}


def select(ctx: Context) -> Sets:
    cfg = ctx.params.csg
    gates = csg_gates(ctx.fit, ctx.head, cfg, ctx.seed) > cfg.threshold  # (P, C, D)
    nec = gates.sum(2).mean(1)  # (P,)
    largest_first = np.argsort(-np.asarray(penalties(cfg)), kind="stable")
    pick = [next((i for i in largest_first if nec[i] >= k), None) for k in ctx.ks]
    jac = [None if i is None else float(jaccard(gates[i], ctx.algorithm1[k]).mean())
           for i, k in zip(pick, ctx.ks)]
    sets = per_k([None if i is None else gates[i] for i in pick])
    return Sets(sets.masks, sets.grid, section=lambda _: section(cfg, nec, jac))
