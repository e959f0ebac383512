"""Where extraction writes: the features table streamed in row groups (`FeatureWriter`), and
built in resumable, fingerprinted parts (`FeatureParts`); the fingerprints themselves."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn

from fclens.core import tables
from fclens.core.errors import FclensError
from fclens.core.io import atomic_path, file_digest

log = logging.getLogger(__name__)


class FeatureWriter:
    """Streams feature rows to Parquet in row groups; the file appears only when the writer
    closes cleanly (the whole write is one `atomic_path`)."""

    def __init__(self, path: str | Path, dim: int, n_classes: int, row_group_size: int) -> None:
        self.path, self.n_classes, self._rows = Path(path), n_classes, row_group_size
        self.schema = tables.FEATURES.schema(dim).with_metadata(
            {tables.META_TABLE: b"features",
             tables.META_VERSION: str(tables.SCHEMA_VERSION).encode()})
        self._buf: list[pa.RecordBatch] = []
        self._buffered = 0

    def __enter__(self) -> FeatureWriter:
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        try:
            self._writer = pq.ParquetWriter(tmp, self.schema, write_page_checksum=True)
        except BaseException as e:  # the temp file must not outlive a failed open
            self._atomic.__exit__(type(e), e, e.__traceback__)
            if isinstance(e, OSError | pa.ArrowException):
                raise FclensError(f"{self.path}: cannot be written ({type(e).__name__}: {e}); "
                                  f"expected a writable path") from None
            raise
        return self

    def write(self, index: np.ndarray, label: np.ndarray, pred: np.ndarray,
              logit_true: np.ndarray, features: np.ndarray) -> None:
        t = tables.feature_rows(self.schema, index, label, pred, logit_true, features)
        tables.check_rows(t, tables.FEATURES,
                          f"{self.path} (rows {int(index[0])}..{int(index[-1])})",
                    self.n_classes)
        self._buf.extend(t.to_batches())
        self._buffered += len(index)
        if self._buffered >= self._rows:
            self._flush()

    def _flush(self) -> None:
        if self._buf:
            self._writer.write_table(pa.Table.from_batches(self._buf, self.schema),
                                     row_group_size=self._rows)
            self._buf, self._buffered = [], 0

    def __exit__(self, exc_type, exc, tb) -> bool | None:
        try:
            if exc_type is None:
                self._flush()
        finally:
            self._writer.close()
        return self._atomic.__exit__(exc_type, exc, tb)


class FeatureParts:
    """A features table built in resumable pieces.

    Each complete row group lands as a part file `rows-<start>-<stop>.parquet`, written to a
    temp name and renamed whole, in the hidden sibling directory `.<name>.parts/`, beside a
    `fingerprint.json` of what determines the rows (weights, dataset file, the extract settings
    that change features). DVC deletes a stage's outs before rerunning it and `atomic_path`
    sweeps stale `.<name>.*.tmp` files; this directory is neither, so a killed run leaves it to
    the next one. `open` returns the rows already done, after discarding parts of another
    fingerprint and anything after a gap or an unreadable part; `merge` writes the final table
    from the parts (one `FeatureWriter`, so it appears atomically and is the same file an
    uninterrupted run writes); `remove` deletes the directory.
    """

    def __init__(self, path: str | Path, fingerprint: dict, dim: int, n_classes: int) -> None:
        self.path, self.dim, self.n_classes = Path(path), dim, n_classes
        self.dir = self.path.with_name(f".{self.path.name}.parts")
        self.fingerprint = json.loads(json.dumps(fingerprint))  # what reading it back gives
        self.schema = tables.FEATURES.schema(dim)
        self.done = 0
        self._parts: list[tuple[Path, dict]] = []  # (file, its meta), in row order

    @property
    def metas(self) -> list[dict]:
        """The `meta` dict of each part, in row order."""
        return [m for _, m in self._parts]

    def open(self) -> int:
        """Rows 0..done-1 are in complete parts of this fingerprint; returns done."""
        fp = self.dir / "fingerprint.json"
        try:
            old = json.loads(fp.read_text()) if fp.exists() else None
        except (OSError, ValueError):
            old = "unreadable"
        if old != self.fingerprint:
            if old is not None:
                differ = (sorted(k for k in {**old, **self.fingerprint}
                                 if old.get(k) != self.fingerprint.get(k))
                          if isinstance(old, dict) else [old])
                log.info("%s: discarding parts made with another configuration (%s differ)",
                          self.dir, ", ".join(differ))
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir.mkdir(parents=True)
            with atomic_path(fp, now=True) as tmp:
                tmp.write_text(json.dumps(self.fingerprint, indent=1, sort_keys=True))
        for stale in self.dir.glob(".*.tmp"):  # a killed writer's
            stale.unlink(missing_ok=True)
        files = sorted(self.dir.glob("rows-*-*.parquet"))
        for i, f in enumerate(files):
            start, stop = (int(x) for x in f.stem.split("-")[1:])
            meta = self._part_meta(f, stop - start) if start == self.done else None
            if meta is None:  # a gap or a damaged part: everything from here is redone
                log.info("%s: discarding %d parts from row %d (%s)", self.dir, len(files) - i,
                          self.done, "gap" if start != self.done else f"{f.name} unreadable")
                for g in files[i:]:
                    g.unlink(missing_ok=True)
                break
            self._parts.append((f, meta))
            self.done = stop
        return self.done

    def _part_meta(self, f: Path, rows: int) -> dict | None:
        try:
            pf = pq.ParquetFile(f)
            meta = json.loads(pf.schema_arrow.metadata[tables.META_PART])
        except (pa.ArrowException, OSError, KeyError, TypeError, ValueError):
            return None
        if pf.metadata.num_rows != rows or pf.schema_arrow.remove_metadata() != self.schema:
            return None
        return meta

    def write(self, index: np.ndarray, label: np.ndarray, pred: np.ndarray,
              logit_true: np.ndarray, features: np.ndarray, meta: dict) -> None:
        """Rows done..done+len(index)-1 as one part; `meta` (JSON) travels with it."""
        stop = self.done + len(index)
        if not np.array_equal(index, np.arange(self.done, stop)):
            raise FclensError(f"{self.dir}: rows {int(index[0])}..{int(index[-1])} given for "
                              f"part {self.done}..{stop - 1}; expected consecutive indices")
        t = tables.feature_rows(self.schema, index, label, pred, logit_true, features)
        tables.check_rows(t, tables.FEATURES, f"{self.path} (rows {self.done}..{stop - 1})",
                          self.n_classes)
        t = t.replace_schema_metadata({tables.META_TABLE: b"features",
                                       tables.META_VERSION: str(tables.SCHEMA_VERSION).encode(),
                                       tables.META_PART: json.dumps(meta).encode()})
        f = self.dir / f"rows-{self.done:012d}-{stop:012d}.parquet"
        with atomic_path(f, now=True) as tmp:  # now: on disk when complete, not at stage end
            pq.write_table(t, tmp, write_page_checksum=True)
        self._parts.append((f, meta))
        self.done = stop

    def merge(self, n_rows: int, row_group_size: int) -> None:
        """The final table at `path` from all parts, which must cover rows 0..n_rows-1."""
        if self.done != n_rows:
            raise FclensError(f"{self.dir}: parts hold rows 0..{self.done - 1}; expected "
                              f"0..{n_rows - 1}")
        with FeatureWriter(self.path, self.dim, self.n_classes, row_group_size) as w:
            for f, _ in self._parts:
                # checksums, finite values, class range
                t = tables.read(f, tables.FEATURES, self.n_classes, self.dim)
                w.write(t["index"].to_numpy(), t["label"].to_numpy(), t["pred"].to_numpy(),
                        t["logit_true"].to_numpy(), tables.vectors(t["features"]))

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def weights_digest(model: nn.Module) -> str:
    """sha256 of every state-dict tensor (name, dtype, shape, bytes): the weights, exactly."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        v = v.detach().cpu().contiguous()
        h.update(f"{k} {v.dtype} {tuple(v.shape)}".encode())
        h.update(v.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def model_fingerprint(model: nn.Module, cfg, device_type: str) -> dict:
    """What, besides the dataset, determines the features: parts with another fingerprint are
    recomputed. batch_size, workers, threads and the backend only change float rounding."""
    return {"format": 1, "model": type(model).__name__, "weights": weights_digest(model),
            "mean": list(model.pretrained_cfg["mean"]), "std": list(model.pretrained_cfg["std"]),
            "device": device_type, "amp": cfg.amp, "channels_last": cfg.channels_last,
            "engine": cfg.engine}


def split_fingerprint(path: Path, split, inputs: str) -> dict:
    """The split file (its bytes: a folder split's index of files, not the images) and how its
    images become model inputs (`inputs`: the preprocessing's repr)."""
    return {"dataset": f"{path.name} sha256:{file_digest(path)}", "rows": len(split.labels),
            "inputs": inputs}
