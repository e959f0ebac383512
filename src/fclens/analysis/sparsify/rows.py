"""The training split's two parts: a validation part carved once by seed, the rest to fit."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from fclens.analysis.decompose import Source, batches
from fclens.core.errors import FclensError
from fclens.core.tables import Features

WHERE = "params.yaml sparsify"


@dataclass(frozen=True)
class Part:
    """The rows of `source` where `keep` (N,) is True, as a re-iterable source in file order."""

    source: Source
    keep: np.ndarray  # (N,) bool over the source's rows

    def __iter__(self) -> Iterator[Features]:
        start = 0
        for f in batches(self.source):
            sel = self.keep[start:start + len(f.labels)]
            start += len(f.labels)
            if sel.any():
                yield Features(f.x[sel], f.labels[sel], f.preds[sel])
        if start != len(self.keep):
            raise FclensError(f"the training features have {start} rows, the split was carved "
                              f"for {len(self.keep)}: the file changed during the stage")


def carve_validation(source: Source, fraction: float, seed: int) -> np.ndarray:
    """(N,) bool, True on the validation rows: round(fraction * N) rows drawn by seed."""
    n = sum(len(f.labels) for f in batches(source))
    n_val = round(fraction * n)
    if not 0 < n_val < n:
        raise FclensError(f"{WHERE}.val_fraction: {fraction} of {n} training rows leaves "
                          f"{n_val} for validation and {n - n_val} to fit; expected both >= 1")
    is_val = np.zeros(n, bool)
    is_val[np.random.default_rng(seed).permutation(n)[:n_val]] = True
    return is_val


def materialize(source: Source) -> Features:
    """All rows of a source in memory (elastic_net only: its solver needs them)."""
    parts = list(batches(source))
    if not parts:
        raise FclensError("no rows to fit; expected at least one training row")
    return Features(np.concatenate([f.x for f in parts]), np.concatenate([f.labels for f in parts]),
                    np.concatenate([f.preds for f in parts]))
