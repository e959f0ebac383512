"""A file the user may already have, else downloaded, resumably and checksum-verified: the one
home of "local file, else download and verify" for datasets and checkpoints alike."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from pathlib import Path

from fclens.core.errors import FclensError
from fclens.core.io import verify_checksum

log = logging.getLogger(__name__)


def download(url: str, dest: Path, checksum: str, timeout: float = 60.0) -> Path:
    """Download `url` to `dest`, resuming a `.part` file, verifying `checksum` before the rename."""
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    log.info("downloading %s -> %s (resuming at %d bytes)", url, dest, have)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resumed = have and resp.status == 206
            with open(part, "ab" if resumed else "wb") as f:
                while block := resp.read(1 << 20):
                    f.write(block)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # range not satisfiable: the .part is already complete
            pass
        else:
            raise
    try:
        verify_checksum(part, checksum, f"download of {url}")
    except FclensError:
        part.unlink()  # a wrong file must not be resumed from next time
        raise
    part.replace(dest)
    return dest


def local_or_download(path: str | Path, checksum: str | None, where: str, what: str,
                      url: str | None = None, dl_path: str | Path | None = None,
                      dl_checksum: str | None = None, missing_hint: str = "",
                      dl_key: str = "") -> Path:
    """`path` if it is a file (`checksum` verified when given), else `dl_path` (verified against
    `dl_checksum`, default `checksum`), downloading `url` there first if absent.

    where: the params key of `path`, for messages; what: "checkpoint", "archive", ...;
    missing_hint: what else the user may give instead, when there is no `url`; dl_key: the
    params key of `dl_checksum`, for messages.
    """
    path = Path(path)
    if path.is_dir():
        raise FclensError(f"{path}: is a directory ({where}); expected {what} file")
    if path.exists():
        if checksum:
            verify_checksum(path, checksum, f"{where.rsplit('.', 1)[0]}.checksum")
        return path
    if not url or dl_path is None:
        raise FclensError(f"{path}: {what} not found ({where}); {missing_hint or 'put it there'}")
    dl_path, dl_checksum = Path(dl_path), dl_checksum or checksum
    if dl_path.is_dir():
        raise FclensError(f"{dl_path}: is a directory (download target of {where}); expected "
                          f"{what} file")
    if not dl_path.exists():
        try:
            download(url, dl_path, dl_checksum)
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            raise FclensError(
                f"{path}: {what} not found ({where}) and downloading {url} failed ({e}). "
                f"Offline, put either {path.name} ({checksum}) at {path}, or "
                f"{Path(url).name} ({dl_checksum}) at {dl_path}") from None
    verify_checksum(dl_path, dl_checksum, dl_key or f"download of {url}")
    return dl_path
