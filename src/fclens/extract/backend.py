"""Extraction behind one backend interface, chosen by name (params.yaml extract.backend).

A backend computes rows of splits into resumable parts (`parts.FeatureParts`); `extract_splits`
opens the parts, hands the missing rows to the backend, merges the parts into the features
tables and adds up the metrics. Backends are found by name in `BACKENDS` and imported only when
chosen, so this module imports none of them (the ray backend imports this one, never the
reverse) and a torch-only install needs no Ray.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from torch import nn

from fclens.core.errors import FclensError
from fclens.datasets.splits import Split, load_split
from fclens.extract.loop import combine_results
from fclens.extract.parts import FeatureParts, model_fingerprint, split_fingerprint
from fclens.models.heads import linear_head
from fclens.models.inputs import uint8_transform

if TYPE_CHECKING:
    from fclens.core.params import Extract

log = logging.getLogger(__name__)

# name -> "module:class"; a new backend is one module and one line here
BACKENDS = {"local": "fclens.extract.local:LocalBackend",
            "ray": "fclens.extract.ray_backend:RayBackend"}


class Backend(Protocol):
    def __init__(self, model: nn.Module, cfg: Extract) -> None: ...

    def device_type(self) -> str:
        """"cpu" or "cuda": part of the parts' fingerprint."""

    def compute(self, jobs: list[tuple]) -> None:
        """For each (split, parts, desc): rows parts.done..N-1 of `split` appended to `parts`,
        a row group at a time (`parts.write(..., meta=asdict(ExtractResult))`)."""

    def close(self) -> None: ...


def make_backend(name: str, model: nn.Module, cfg: Extract) -> Backend:
    if name not in BACKENDS:
        raise FclensError(f"params.yaml extract.backend: {name!r}; allowed: "
                          f"{', '.join(BACKENDS)}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)(model, cfg)


def batches_per_part(cfg: Extract) -> int:
    """Batches in one resumable part (a row group, rounded up: parts end on batch boundaries,
    on every backend)."""
    return -(-cfg.row_group_size // cfg.batch_size)


def extract_splits(model: nn.Module, data: str | Path, out: str | Path, cfg: Extract,
                   name: str) -> tuple[dict, dict]:
    """Features of data/{train,test}.npz -> out/features_{split}.parquet.

    Returns (metrics, timing). The dataset's classes must be the model's classes.
    cfg.backend: a name in BACKENDS (local: this process; ray: Ray Data). Either way the rows
    land a row
    group at a time in resumable parts (parts.FeatureParts): a killed run's successor starts
    at the last complete part, and the final tables are the parts merged, then the parts go.
    Metrics and timing add up the parts' results, so a resumed run reports what one run would.
    """
    data, out = Path(data), Path(out)
    fc = linear_head(model)  # its input width, not model.num_features: a pre-logits layer
    n_classes, dim = fc.out_features, fc.in_features  # (e.g. MobileNetV3's) changes it
    metrics: dict = {}
    seconds, n_total, setup = 0.0, 0, 0.0
    backend = make_backend(cfg.backend, model, cfg)
    jobs: list[tuple] = []  # (split name, split, its parts)
    try:
        fp = model_fingerprint(model, cfg, backend.device_type())
        for split in ("train", "test"):
            s = load_split(data / f"{split}.npz")
            if len(s.class_names) != n_classes:
                raise FclensError(f"{data / f'{split}.npz'}: {len(s.class_names)} classes "
                                  f"({', '.join(s.class_names[:5])}...); model {name} has "
                                  f"{n_classes} outputs; expected the same number")
            inp = "uint8 arrays" if isinstance(s, Split) else repr(uint8_transform(model))
            parts = FeatureParts(out / f"features_{split}.parquet",
                                 {**fp, **split_fingerprint(data / f"{split}.npz", s, inp)},
                                 dim, n_classes)
            if done := parts.open():
                log.info("%s %s: resuming at row %d of %d", name, split, done, len(s.labels))
            jobs.append((split, s, parts))
        # both splits in one go: the ray backend starts its actors (and loads the model) once
        backend.compute([(s, parts, f"{name} {split}") for split, s, parts in jobs
                         if parts.done < len(s.labels)])
    finally:
        backend.close()
    for split, s, parts in jobs:
        parts.merge(len(s.labels), cfg.row_group_size)
        r = combine_results(parts.metas)
        metrics.update({f"acc_{split}": r.accuracy, f"n_{split}": r.n})
        metrics["logit_max_abs_err"] = max(metrics.get("logit_max_abs_err", 0.0),
                                           r.logit_max_abs_err)
        seconds, n_total, setup = seconds + r.seconds, n_total + r.n, setup + r.setup_seconds
        if r.engine != "torch":
            metrics["engine_max_abs_err"] = max(metrics.get("engine_max_abs_err", 0.0),
                                                r.engine_max_abs_err)
    for _, _, parts in jobs:  # only once both tables are written
        parts.remove()
    metrics.update(feature_dim=r.feature_dim, device=r.device, batch_size=cfg.batch_size,
                   amp=cfg.amp, channels_last=cfg.channels_last, engine=r.engine)
    timing = {"images_per_s": n_total / seconds, "seconds": seconds}
    if setup:  # engine export + compile (once: later parts reuse it), outside `seconds`
        timing["engine_setup_seconds"] = setup
    return metrics, timing
