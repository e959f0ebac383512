"""Features tables as sources of batches, in bounded memory: what the analyses iterate over.

A source is anything that yields `Features` batches each time it is iterated; a list
`[features]` is the in-memory case, a `FeatureTable` streams a Parquet file with
`tables.iter_features` (all its checks, one batch in memory).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fclens.core.errors import FclensError
from fclens.core.tables import FEATURES, Features, Head, iter_features, num_rows

BATCH_ELEMENTS = 1 << 24  # floats per streamed feature batch (64 MB)


def batch_rows_for(dim: int) -> int:
    """Rows per streamed batch: about 64 MB of float32 features, whatever D (CIFAR's 64-wide
    splits arrive in one batch; ImageNet's 2,048-wide in batches of 8,192 rows)."""
    return max(1024, BATCH_ELEMENTS // max(dim, 1))


@dataclass(frozen=True)
class FeatureTable:
    """A features Parquet file as a re-iterable source of `Features` batches (bounded memory).

    Every analysis takes such a source: anything that yields `Features` batches each time it is
    iterated (a list `[features]` is the in-memory case). Iterating re-reads the file."""

    path: Path
    n_classes: int
    dim: int
    batch_rows: int = 0  # 0: batch_rows_for(dim)

    def __iter__(self) -> Iterator[Features]:
        return iter_features(self.path, self.n_classes, self.dim,
                             self.batch_rows or batch_rows_for(self.dim))

    def __len__(self) -> int:
        return num_rows(self.path, FEATURES)

    def columns(self, columns: tuple[str, ...]) -> Iterator[Features]:
        """Batches of only `columns` (e.g. ("label", "pred"): x is (B, 0))."""
        return iter_features(self.path, self.n_classes, self.dim,
                             self.batch_rows or batch_rows_for(self.dim), columns)


def open_splits(data: str | Path, head: Head, batch_rows: int = 0
                ) -> tuple[FeatureTable | Features, FeatureTable | Features]:
    """features_{train,test}.parquet of `data` as sources of batches, checked against `head` on
    their first batch. A split that fits in one batch is read once and kept (the analyses pass
    over test many times); a larger one is streamed."""
    out = []
    for s in ("train", "test"):
        t = FeatureTable(Path(data) / f"features_{s}.parquet", head.n_classes, head.dim,
                         batch_rows)
        first = next(iter(t))
        check_head(t.path, first, head)
        out.append(first if len(first.labels) == len(t) else t)
    return out[0], out[1]


def check_head(path: Path, f: Features, head: Head) -> None:
    """The features come from the model of this FC head."""
    # `pred` is the model's own argmax, and FC(features) reproduces its logits: a head of
    # another model (same shape) agrees on ~1/C of the rows; AMP may flip a few near-ties
    agree = float((head.logits(f.x).argmax(1) == f.preds).mean())
    if agree < 0.9:
        raise FclensError(f"{path}: the stored predictions (pred) match this FC head's argmax "
                          f"on {agree:.0%} of rows; expected ~100%: the features and the FC "
                          f"weights come from different models")
