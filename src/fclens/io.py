"""Atomic writes, JSON/Parquet helpers and checksums. No DVC, no torch."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)


class FclensError(RuntimeError):
    """An error a user can act on: bad input, bad params, corrupted file."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it onto `path` only if the block succeeds.

    A killed or failing writer leaves the old file (or nothing), never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _round_floats(obj: Any, digits: int) -> Any:
    if isinstance(obj, float | np.floating):
        x = float(obj)
        if not math.isfinite(x):
            return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
        return float(f"{x:.{digits}g}")  # significant digits: tiny errors stay visible
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, dict):
        return {str(k): _round_floats(v, digits) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [_round_floats(v, digits) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj: dict, digits: int = 6) -> None:
    """Sorted keys, floats to `digits` significant digits, atomic: same numbers, same bytes."""
    text = json.dumps(_round_floats(obj, digits), indent=2, sort_keys=True) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_json(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.exists():
        raise FclensError(f"{path}: missing; run the stage that writes it (dvc repro)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise FclensError(f"{path}: not valid JSON ({e})") from e


def write_table(path: str | os.PathLike, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_table(path: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    """Read Parquet, turning pyarrow's low-level errors into one that names the file."""
    path = Path(path)
    if not path.exists():
        raise FclensError(f"{path}: missing; run the stage that writes it (dvc repro)")
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as e:
        raise FclensError(
            f"{path}: not a readable Parquet file ({type(e).__name__}: {e}); it is truncated or "
            f"corrupted: delete it and rerun `dvc repro`"
        ) from e


def list_column_to_numpy(col: pa.ChunkedArray | pa.Array, dim: int | None = None) -> np.ndarray:
    """A (fixed-size) list<float32> column as a (N, D) float32 array, without a Python loop."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    values = col.flatten().to_numpy(zero_copy_only=False)
    n = len(col)
    if n == 0:
        return np.zeros((0, dim or 0), dtype=np.float32)
    return values.reshape(n, -1).astype(np.float32, copy=False)


def fixed_list_array(x: np.ndarray) -> pa.FixedSizeListArray:
    """(N, D) float32 -> fixed_size_list<float32>[D] (no copy of the values)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])


def file_digest(path: str | os.PathLike, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def parse_checksum(spec: str, where: str) -> tuple[str, str]:
    """'sha256:<hex>' or 'md5:<hex>' -> (algo, hex)."""
    algo, _, digest = str(spec).partition(":")
    lengths = {"sha256": 64, "md5": 32}
    if algo not in lengths or len(digest) != lengths[algo]:
        raise FclensError(
            f"{where}: checksum must look like 'sha256:<64 hex>' or 'md5:<32 hex>', got {spec!r}"
        )
    return algo, digest.lower()


def verify_checksum(path: str | os.PathLike, spec: str, where: str) -> None:
    algo, expected = parse_checksum(spec, where)
    got = file_digest(path, algo)
    if got != expected:
        raise FclensError(
            f"{path}: {algo} is {got}, expected {expected} ({where}); the file is truncated, "
            f"corrupted or a different version: replace it"
        )
