"""Which images are explained: picked from the streamed label/pred columns in bounded memory."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from fclens.core.tables import Features


def first_rows(batches: Iterable[Features], quota: np.ndarray) -> tuple[np.ndarray, Features]:
    """Image picking in bounded memory: of each (class c, correct?) group, its first
    quota[c, 0 if correct else 1] rows, streamed from `batches` (label and pred are enough),
    stopping once every quota is met. Returns their row indices (M,) ascending and their rows
    (x empty), so a picker that takes the first rows of such groups gives the same images on
    these as on the whole split."""
    taken = np.zeros_like(quota, dtype=np.int64)  # (C, 2)
    rows, labels, preds, start = [], [], [], 0
    for f in batches:
        group = f.labels * 2 + (f.preds != f.labels)  # (B,) flat (class, wrong) index
        # rank of each row within its group, counting the rows already taken before the batch
        order = np.argsort(group, kind="stable")
        gs = group[order]
        first = np.r_[0, np.flatnonzero(gs[1:] != gs[:-1]) + 1]
        rank = np.empty(len(gs), np.int64)
        rank[order] = np.arange(len(gs)) - np.repeat(first, np.diff(np.r_[first, len(gs)]))
        keep = rank + taken.ravel()[group] < quota.ravel()[group]
        rows.append(start + np.flatnonzero(keep))
        labels.append(f.labels[keep])
        preds.append(f.preds[keep])
        taken.ravel()[:] += np.bincount(group[keep], minlength=taken.size)
        start += len(f.labels)
        if (taken >= quota).all():
            break
    lab = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    return (np.concatenate(rows) if rows else np.zeros(0, np.int64),
            Features(np.zeros((len(lab), 0), np.float32), lab,
                     np.concatenate(preds) if preds else np.zeros(0, np.int64)))


