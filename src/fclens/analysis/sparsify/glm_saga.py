"""glm-saga plumbing for elastic_net: its loaders, its printout, its regularization path."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from fclens.analysis.decompose import one_thread
from fclens.core.tables import Features

if TYPE_CHECKING:
    from fclens.core.params import SparsifyElasticNet

log = logging.getLogger(__name__)

EN_TOL, EN_LOOKBEHIND = 1e-4, 3  # glm-saga: stop a lambda after 3 epochs without 1e-4 progress
EN_SELECT_DROP = 0.05  # the paper's rule: sparsest lambda within 5 points of the best val acc


@dataclass(frozen=True)
class _Batches:
    """glm-saga's loader: (X, y, row index) batches, reshuffled by a seeded generator each
    epoch (a DataLoader over a TensorDataset indexes row by row: ~5x slower here)."""

    x: object  # torch (N, D)
    y: object  # torch (N,)
    batch_size: int
    seed: int | None  # None: file order (the validation loader)
    _state: dict = field(default_factory=dict)

    def __iter__(self):
        import torch

        n = len(self.y)
        if self.seed is None:
            perm = torch.arange(n)
        else:
            g = self._state.setdefault("g", torch.Generator().manual_seed(self.seed))
            perm = torch.randperm(n, generator=g)
        for i in range(0, n, self.batch_size):
            j = perm[i:i + self.batch_size]
            yield self.x[j], self.y[j], j


class _LogLines(io.TextIOBase):
    """glm-saga prints one line per lambda: route them to the debug log."""

    def write(self, s: str) -> int:
        for line in s.splitlines():
            if line.strip():
                log.debug("glm-saga: %s", line)
        return len(s)


@dataclass(frozen=True)
class EnPath:
    lam: np.ndarray  # (L,) decreasing, the last 0
    w: np.ndarray  # (L, C, D) on the unstandardized features
    b: np.ndarray  # (L, C)
    val_acc: np.ndarray  # (L,)
    n_rows: int  # fit rows the path saw
    n_fit: int  # fit rows available

    @property
    def nec(self) -> np.ndarray:
        """(L,) mean non-zeros per class."""
        return (self.w != 0).sum(2).mean(1)

    def at_k(self, k: int) -> int | None:
        """Index of the largest lambda whose NEC is at least k (None: the path never gets
        there)."""
        hit = np.flatnonzero(self.nec >= k)
        return int(hit[0]) if len(hit) else None

    def selected(self) -> int:
        """The paper's rule: the sparsest lambda whose validation accuracy is within
        EN_SELECT_DROP (absolute) of the path's best; ties to the larger lambda."""
        ok = np.flatnonzero(self.val_acc >= np.nanmax(self.val_acc) - EN_SELECT_DROP)
        return int(ok[np.argmin(self.nec[ok])])  # the first minimum: the larger lambda


def elastic_net_path(fit: Features, val: Features, n_classes: int, cfg: SparsifyElasticNet,
                     seed: int, n_fit: int | None = None) -> EnPath:
    """glm-saga's regularization path on the standardized features; weights mapped back.

    cfg: the params section (alpha, n_lambda, epsilon, epochs, lr, batch_size)."""
    import torch
    from glm_saga.elasticnet import glm_saga, maximum_reg

    x = fit.x.astype(np.float64)
    mu, sd = x.mean(0), x.std(0)
    sd[sd == 0] = 1.0  # a dead (always-zero) channel stays zero, and gets weight zero
    xs = torch.from_numpy(((x - mu) / sd).astype(np.float32))
    ys = torch.from_numpy(fit.labels.astype(np.int64))
    xv = torch.from_numpy(((val.x - mu) / sd).astype(np.float32))
    yv = torch.from_numpy(val.labels.astype(np.int64))
    linear = torch.nn.Linear(x.shape[1], n_classes)
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()
    torch.manual_seed(seed)
    lam_max = maximum_reg(xs, ys, group=False)  # the smallest lambda of the all-zero solution
    with one_thread(), contextlib.redirect_stdout(_LogLines()), warnings.catch_warnings():
        # glm-saga calls softmax without dim (torch warns; dim 1 is what it means)
        warnings.filterwarnings("ignore", message="Implicit dimension choice")
        out = glm_saga(linear, _Batches(xs, ys, cfg.batch_size, seed), cfg.lr, cfg.epochs,
                       cfg.alpha, n_ex=len(ys), n_classes=n_classes, k=cfg.n_lambda,
                       epsilon=cfg.epsilon, tol=EN_TOL, lookbehind=EN_LOOKBEHIND, do_zero=True,
                       val_loader=_Batches(xv, yv, 8192, None),
                       metadata={"max_reg": {"nongrouped": lam_max}})
    path = out["path"]
    ws = np.stack([p["weight"].numpy().astype(np.float64) for p in path])  # (L, C, D) standardized
    bs = np.stack([p["bias"].numpy().astype(np.float64) for p in path])
    # x_std = (x - mu) / sd: W_std x_std + b = (W_std / sd) x + (b - W_std (mu / sd))
    w = ws / sd
    b = bs - ws @ (mu / sd)
    return EnPath(np.array([float(p["lam"]) for p in path]), w.astype(np.float32),
                  b.astype(np.float32), np.array([p["metrics"]["acc_val"] for p in path]),
                  len(ys), n_fit or len(ys))


def elastic_net_rows(is_fit: np.ndarray, max_rows: int, seed: int) -> np.ndarray:
    """(N,) bool: the fit rows elastic_net reads, a seeded subsample above max_rows."""
    rows = np.flatnonzero(is_fit)
    if len(rows) > max_rows:
        rows = np.random.default_rng(seed).choice(rows, max_rows, replace=False)
    keep = np.zeros(len(is_fit), bool)
    keep[rows] = True
    return keep
