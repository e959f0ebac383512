"""Atomic writes, JSON and checksums. No DVC, no torch, no Parquet (that is tables.py)."""

from __future__ import annotations

import contextlib
import contextvars
import glob
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fclens.core.errors import FclensError

_MAX_DEPTH = 64  # ancestors examined for a dvc process; deeper chains are not real ones


def _process(pid: int) -> tuple[int, int, list[str]] | None:
    """(parent pid, start time, argv) of a live process, from /proc (Linux); None if it is gone
    (a zombie too: dead, only not yet reaped), unreadable or there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except (OSError, ValueError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # field 2, (comm), may hold spaces and ')'
    try:  # fields[0] is stat field 3 (state), [1] field 4 (ppid), [19] field 22 (start time)
        state, ppid, start = fields[0], int(fields[1]), int(fields[19])
    except (IndexError, ValueError):
        return None
    return None if state in ("Z", "X", "x") else (ppid, start, argv)


def _is_dvc(argv: list[str]) -> bool:
    """`dvc ...`, `python .../bin/dvc ...`, `python -m dvc ...` (not `sh -c "dvc ..."`)."""
    for arg in argv[:4]:
        name = os.path.basename(arg)
        if name in ("dvc", "dvc.exe"):
            return True
        if not (arg.startswith("-") or name.startswith("python")):
            return False
    return False


def _lineage() -> list[tuple[int, int, str]]:
    """(pid, start time, name) of the processes that own this one's outputs: its ancestors up
    to and including the nearest dvc process (`dvc repro` runs a stage through a shell, `$SHELL`
    or /bin/sh, that may fork rather than exec, and that survives dvc), or, when no dvc started
    it (a stage run by hand), its parent alone. [] without /proc: then only getppid is checked."""
    chain: list[tuple[int, int, str]] = []
    pid = os.getppid()
    for _ in range(_MAX_DEPTH):
        info = _process(pid)
        if info is None:
            break
        ppid, start, argv = info
        dvc = _is_dvc(argv)
        chain.append((pid, start, "dvc" if dvc else os.path.basename(argv[0]) or "?"))
        if dvc:
            return chain
        if ppid <= 0 or ppid == pid:
            break
        pid = ppid
    return chain[:1]


_PARENT = os.getppid()  # dvc (or the shell dvc runs the stage with), under `dvc repro`
_LINEAGE = _lineage()  # recorded once, at import: before any output is written
_GROUP: contextvars.ContextVar[list | None] = contextvars.ContextVar("atomic_group", default=None)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _gone_owner() -> str | None:
    """'pid N: name' of the first recorded owner that has exited (or whose pid now names another
    process: its start time differs), or of the parent if this process was re-parented."""
    if os.getppid() != _PARENT:
        return f"pid {_PARENT}"
    for pid, start, name in _LINEAGE:
        info = _process(pid)
        if info is None or info[1] != start:
            return f"pid {pid}: {name}"
    return None


def _commit(tmp: Path, path: Path) -> None:
    # A stage whose `dvc repro` was SIGKILLed no longer owns its outputs (the user may already
    # have started a new run), so it must not overwrite them; neither must an orphaned shell's.
    if gone := _gone_owner():
        raise FclensError(f"{path}: not written: the process that started this stage ({gone}) "
                          f"is gone, so another run may own this output now")
    if tmp.is_dir():  # a whole output directory (DVCLive's), swapped in one rename
        for f in [tmp, *tmp.rglob("*")]:
            os.chmod(f, (0o777 if f.is_dir() else 0o666) & ~_umask())
        if path.exists():
            shutil.rmtree(path)
    else:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs follow the umask
    os.replace(tmp, path)


def _discard(tmp: Path) -> None:
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_group() -> Iterator[None]:
    """All `atomic_path` writes inside the block land together at its end, or none of them:
    a stage that fails half-way leaves its previous outputs (or none), never a mix."""
    pending: list[tuple[Path, Path]] = []
    token = _GROUP.set(pending)
    try:
        yield
        for tmp, path in pending:
            _commit(tmp, path)
    finally:
        _GROUP.reset(token)
        for tmp, _ in pending:
            _discard(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, now: bool = False) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it onto `path` only if the block succeeds.

    A killed or failing writer leaves the old file (or nothing), never a half-written one; the
    hidden temp files a killed writer left are removed by the next write of the same path.
    Inside `atomic_group`, the rename waits for the group's end, unless `now`: progress that
    must be on disk as soon as it is complete (resumable parts) is renamed at the block's end.
    """
    path = Path(path)
    if path.is_dir():
        raise FclensError(f"{path}: is a directory; expected a file path to write")
    with _staged(path, directory=False, grouped=not now) as tmp:
        yield tmp


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Like `atomic_path` for a whole directory: a fresh temp dir replaces `path` at the end."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FclensError(f"{path}: is a file; expected a directory path to write")
    with _staged(path, directory=True) as tmp:
        yield tmp


@contextlib.contextmanager
def _staged(path: Path, directory: bool, grouped: bool = True) -> Iterator[Path]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
            _discard(stale)
        if directory:
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            tmp = Path(name)
    except OSError as e:  # a parent that is a file, no permission, disk full, ...
        raise FclensError(f"{path}: cannot be written ({type(e).__name__}: {e.strerror}: "
                          f"{e.filename}); expected a writable path") from None
    group = _GROUP.get() if grouped else None
    done = False
    try:
        yield tmp
        if group is None:
            _commit(tmp, path)
        else:
            group.append((tmp, path))
        done = True
    finally:
        if not done or group is None:
            _discard(tmp)


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
    write_text(path, json.dumps(_round_floats(obj, digits), indent=2, sort_keys=True) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_csv(path: str | os.PathLike, rows: list[dict]) -> None:
    """A plot series as CSV (DVC plots), floats to 5 significant digits, atomic."""
    import pandas as pd

    with atomic_path(path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False, float_format="%.5g")


def read_json(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.exists():
        raise FclensError(f"{path}: missing; run the stage that writes it (dvc repro)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise FclensError(f"{path}: not valid JSON ({e})") from e


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
