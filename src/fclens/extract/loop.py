"""The extraction loop: a model over uint8 batches -> penultimate features (the exact input of
the FC layer), predictions and true-class logits, checked against FC(features) == logits.

It runs torch; a CPU inference engine (`extract.engines`) plugs in as `engine`, a callable that
builds the runner on the first batch, so code that only needs torch (finetune, CAM, exemplars)
imports neither engines nor Ray.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from fclens.core.errors import FclensError
from fclens.models.heads import FeaturePath, linear_head
from fclens.models.inputs import normalizer, resolve_device

if TYPE_CHECKING:
    from fclens.core.params import Extract

log = logging.getLogger(__name__)

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class ExtractResult:
    n: int = 0
    n_correct: int = 0
    logit_max_abs_err: float = 0.0
    seconds: float = 0.0
    device: str = "cpu"
    feature_dim: int = 0
    engine: str = "torch"
    engine_max_abs_err: float = 0.0  # engine vs torch features on the first batch
    setup_seconds: float = 0.0  # engine export + compile + check; not in `seconds`

    @property
    def accuracy(self) -> float:
        return self.n_correct / self.n if self.n else float("nan")

    @property
    def images_per_s(self) -> float:
        return self.n / self.seconds if self.seconds else float("nan")


_RESULT_FIELDS = tuple(f.name for f in fields(ExtractResult))


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


@functools.cache  # a process-wide setting: once (extract() runs per part and per Ray batch)
def keep_freed_memory() -> bool:
    """Let glibc serve blocks up to 32 MB from its heap and keep up to 1 GB freed there.

    Eager torch frees and reallocates every layer's activations (MBs at batch 64) on each
    batch; glibc's defaults return some of them to the kernel, so each batch pays page faults,
    and how many depends on the process's heap history. ResNet20 at batch 64 on 2 cores:
    1,383-1,583 img/s over four fresh processes with the defaults, 2,016-2,254 with this
    (metrics/bench/extract.json torch_process_spread). Both settings are needed: the mmap one
    alone was no better, the trim one alone halved the rate. Where mallopt is missing or
    refuses (not glibc), nothing changes and this returns False.
    """
    try:  # find_library None: CDLL(None) is this process's own symbols, its libc's among them
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):  # macOS, Windows: no mallopt
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(_M_TRIM_THRESHOLD,
                                                                        1 << 30))


def prepare_model(model: nn.Module, cfg: Extract
                  ) -> tuple[nn.Module, nn.Module, torch.device]:
    """(normalizer, model) on the configured device and memory format."""
    dev = resolve_device(cfg.device)
    keep_freed_memory()
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    norm = normalizer(model).to(dev)
    model = model.eval().to(dev)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return norm, model, dev


@torch.inference_mode()
def extract(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
            cfg: Extract, writer=None, total: int | None = None, desc: str = "extract",
            engine: tuple[str, Callable] | None = None) -> ExtractResult:
    """Run the model once per batch; write features/labels/preds; check FC(features) == logits.

    writer: anything with FeatureWriter's `write` (None: count only). engine: (name, build),
    build(path, first_batch) -> an `engines.Engine` whose `run` replaces torch on the CPU
    (`engines.for_config` picks it from params; CUDA always runs torch).
    """
    engine_name, build = engine if engine is not None else ("torch", None)
    if build is not None:  # the engine picks its own layout; export from the plain model
        cfg = cfg.model_copy(update={"channels_last": False})
    norm, inner, dev = prepare_model(model, cfg)
    path = FeaturePath(norm, inner)
    fc = linear_head(inner, exact=True)
    w64, b64 = fc.weight.double(), fc.bias.double()  # (C, D), (C,)
    amp = AMP_DTYPES[cfg.amp]
    if amp is torch.float16 and dev.type != "cuda":
        raise FclensError("params.yaml extract.amp: fp16 needs CUDA; use bf16 or none on CPU")
    pin = cfg.pin_memory and dev.type == "cuda"
    res = ExtractResult(device=str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
                        engine=engine_name)
    run = None  # the engine's runner, built on the first batch (its input shape and dtype)
    offset = 0
    t0 = time.perf_counter()
    for x, y in tqdm(batches, total=total, desc=desc, mininterval=5, unit="batch"):
        if build is not None:
            if run is None:
                eng = build(path, x)
                run, res.engine_max_abs_err = eng.run, eng.max_abs_err
                res.setup_seconds = eng.setup_seconds
            f_np, l_np = run(np.ascontiguousarray(x.numpy()))  # (B, D), (B, C)
            feats, logits = torch.from_numpy(f_np), torch.from_numpy(l_np)
        else:
            if pin:
                x = x.pin_memory()
            x = x.to(dev, non_blocking=True)
            with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
                feats, logits = path(x)  # (B, D), (B, C): logits from the model's own head
        feats = feats.float()
        # the stored features must reproduce the model's logits through the FC layer
        err = (feats.double() @ w64.T + b64 - logits.double()).abs().max().item()
        if not np.isfinite(err):  # max(x, nan) would hide it
            raise FclensError(f"{desc}: non-finite features or logits in images "
                              f"{offset}..{offset + len(y) - 1}; expected finite values")
        res.logit_max_abs_err = max(res.logit_max_abs_err, err)
        pred = logits.argmax(1)
        y_dev = y.to(dev, non_blocking=True)
        res.n_correct += int((pred == y_dev).sum())
        if writer is not None:
            lt = logits.float().gather(1, y_dev.clamp(min=0).view(-1, 1)).squeeze(1)
            writer.write(np.arange(offset, offset + len(y)), y.numpy(), pred.cpu().numpy(),
                         lt.cpu().numpy(), feats.cpu().numpy())
        offset += len(y)
        res.feature_dim = feats.shape[1]
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    res.seconds = time.perf_counter() - t0 - res.setup_seconds
    res.n = offset
    return res


class RowBuffer:
    """FeatureWriter's `write`, kept in memory: the rows of one part (or one Ray batch)."""

    def __init__(self) -> None:
        self._rows: list[tuple[np.ndarray, ...]] = []

    def write(self, index: np.ndarray, label: np.ndarray, pred: np.ndarray,
              logit_true: np.ndarray, features: np.ndarray) -> None:
        self._rows.append((label, pred, logit_true, features))

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(label (N,), pred (N,), logit_true (N,), features (N, D)) in write order."""
        return tuple(np.concatenate(c) for c in zip(*self._rows))


def combine_results(metas: list[dict]) -> ExtractResult:
    """One ExtractResult from the parts' (asdict of each part's): counts and times add up,
    errors take the max, the rest (device, engine, ...) is the last part's."""
    parts = [ExtractResult(**{k: v for k, v in m.items() if k in _RESULT_FIELDS})
             for m in metas]
    out = {}
    for k in _RESULT_FIELDS:
        vals = [getattr(p, k) for p in parts]
        out[k] = (sum(vals) if k in ("n", "n_correct") or k.endswith("seconds") else
                  max(vals) if k.endswith("_err") else vals[-1])
    return ExtractResult(**out)


