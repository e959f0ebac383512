"""Every set to evaluate, each scored once: its no-refit head on test, its mask refit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fclens.analysis.decompose import Source, accuracies, train_masked_heads
from fclens.core.tables import Head

if TYPE_CHECKING:
    from fclens.core.params import SparsifyRefit


@dataclass
class Point:
    """One evaluated head: its mask's mean size per class (NEC) and union, and, once scored,
    its test accuracy without and with refit."""

    nec: float
    union: int
    no_refit_index: int  # its no-refit head in `Bank.heads`
    refit_index: int  # its mask in `Bank.masks` (and its refit head in `Bank.refit_heads`)
    acc: float = float("nan")
    acc_refit: float = float("nan")


class Bank:
    """Every set to evaluate: its no-refit head (all scored on test in one pass) and its mask
    (all refit in one batched training), each stored once however many methods ask for it."""

    def __init__(self, head: Head) -> None:
        self.head = head
        self.heads: list[tuple[np.ndarray, np.ndarray]] = [(head.w, head.b)]  # 0: dense
        self.masks: list[np.ndarray] = []
        self.points: list[Point] = []
        self._seen: dict[tuple[str, bytes], int] = {}
        self.dense_acc = float("nan")
        self.refit_heads: list[Head] = []  # after `score`, in the order of `masks`

    def _once(self, kind: str, mask: np.ndarray, add) -> int:
        key = (kind, np.packbits(mask).tobytes())
        if key not in self._seen:
            self._seen[key] = add()
        return self._seen[key]

    def _add_head(self, w: np.ndarray, b: np.ndarray) -> int:
        self.heads.append((w, b))
        return len(self.heads) - 1

    def _add_mask(self, mask: np.ndarray) -> int:
        self.masks.append(mask)
        return len(self.masks) - 1

    def add(self, mask: np.ndarray, own: tuple[np.ndarray, np.ndarray] | None = None) -> Point:
        """mask (C, D); own: the method's own no-refit weights (elastic_net), else the original
        weights masked."""
        head = (self._add_head(*own) if own is not None else
                self._once("head", mask, lambda: self._add_head(self.head.w * mask, self.head.b)))
        refit = self._once("mask", mask, lambda: self._add_mask(mask))
        p = Point(float(mask.sum(1).mean()), int(mask.any(0).sum()), head, refit)
        self.points.append(p)
        return p

    def score(self, fit: Source, test: Source, refit: SparsifyRefit, seed: int) -> None:
        """Refit every mask on the fit part (one training, `refit`: the params sparsify.refit
        section; minibatch order by seed), score every head on test."""
        self.refit_heads = train_masked_heads(fit, self.head, np.stack(self.masks), refit, seed)
        # one pass over test scores the no-refit and the refit heads together
        acc = accuracies(test, self.heads + [(h.w, h.b) for h in self.refit_heads])
        acc_head, acc_mask = acc[:len(self.heads)], acc[len(self.heads):]
        self.dense_acc = acc_head[0]
        for p in self.points:
            p.acc, p.acc_refit = acc_head[p.no_refit_index], acc_mask[p.refit_index]
