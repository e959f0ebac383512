"""CPU inference engines for extraction: OpenVINO and ONNX Runtime beside eager torch.

The model's extraction path (uint8 NHWC -> normalize -> pre-logit features and logits, the
`FeaturePath` below) is exported to ONNX with torch's exporter, batch axis dynamic, and
compiled by the engine for the CPU, once per model while its weights stay unchanged
(`engine_for`). Before an engine's output is trusted, it is run beside the
torch path on one sample batch (extract() uses its first batch) and must agree within
`F32_TOL` on every feature; otherwise a `FclensError` names params.yaml extract.engine.

The engine packages are imported only here and only when an engine is asked for, so a torch-only
install needs none of them. OpenVINO runs bf16 by default on CPUs that have it (AVX512-BF16,
AMX): it is pinned to f32 unless extract.amp asks bf16.
"""

from __future__ import annotations

import importlib
import itertools
import logging
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fclens.core.errors import FclensError
from fclens.models.heads import FeaturePath
from fclens.models.inputs import resolve_device

log = logging.getLogger(__name__)

# the exact versions in requirements.txt (tests/test_engines.py checks they agree)
PINS = {"openvino": "openvino==2026.4.1", "onnxruntime": "onnxruntime==1.31.1",
        "onnx": "onnx==1.23.2", "onnxscript": "onnxscript==0.7.2"}
# packages each engine needs: the runtime, plus onnx and onnxscript for torch's ONNX exporter
NEEDS = {"openvino": ("openvino", "onnx", "onnxscript"),
         "onnxruntime": ("onnxruntime", "onnx", "onnxscript")}
F32_TOL = 1e-4  # max abs feature error vs torch: f32 engines agree to ~1e-6 on ResNet20
# bf16 (OpenVINO only) keeps 8 mantissa bits and its error grows with depth: allow 1/16 of the
# largest feature. OpenVINO bf16 is off by ~1/100 on ResNet20 (0.047, features up to 4.7); a
# wrong graph (normalization, layout) is off by the order of the features themselves.
BF16_REL_TOL = 1 / 16


Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # (B, ...) -> (B, D), (B, C)


def require(engine: str) -> dict:
    """Import the packages `engine` needs; a missing one is a FclensError with the pip line."""
    mods, missing = {}, []
    for pkg in NEEDS[engine]:
        try:
            mods[pkg] = importlib.import_module(pkg)
        except ImportError:
            missing.append(pkg)
    if missing:
        raise FclensError(f"params.yaml extract.engine: {engine!r} needs the Python package(s) "
                          f"{', '.join(missing)}, not installed; install with: pip install "
                          f"{' '.join(PINS[p] for p in missing)} (or set extract.engine: torch)")
    return mods


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter's graph passes log every rewrite at INFO, which stages show: hide those."""
    loggers = [logging.getLogger(n) for n in ("onnxscript", "onnx_ir", "torch.onnx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def export_onnx(path: FeaturePath, sample: torch.Tensor, dst: Path) -> None:
    """`path` -> ONNX file `dst` with inputs shaped like `sample` except a dynamic batch axis."""
    batch = torch.export.Dim.DYNAMIC  # DYNAMIC, not a named Dim: a sample batch of 1 is fine
    try:
        with _quiet_exporter():
            torch.onnx.export(path.eval(), (sample,), dst, dynamo=True, input_names=["x"],
                              output_names=["features", "logits"], dynamic_shapes=({0: batch},),
                              verbose=False)
    except Exception as e:  # the exporter raises many types; the user needs the model and why
        raise FclensError(f"params.yaml extract.engine: cannot export {type(path.model).__name__}"
                          f" to ONNX ({type(e).__name__}: {str(e)[:300]}); use extract.engine: "
                          f"torch for this model") from e


def _onnxruntime(onnx_file: Path, num_threads: int, bf16: bool) -> Runner:
    del bf16  # f32 only (build_engine refuses bf16)
    ort = require("onnxruntime")["onnxruntime"]
    so = ort.SessionOptions()
    if num_threads > 0:
        so.intra_op_num_threads = num_threads
    sess = ort.InferenceSession(str(onnx_file), so, providers=["CPUExecutionProvider"])

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feats, logits = sess.run(None, {"x": x})
        return feats, logits
    return run


def _openvino(onnx_file: Path, num_threads: int, bf16: bool) -> Runner:
    ov = require("openvino")["openvino"]
    # LATENCY: one synchronous request uses every core (THROUGHPUT would split them in streams)
    config = {"INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32", "PERFORMANCE_HINT": "LATENCY"}
    if num_threads > 0:
        config["INFERENCE_NUM_THREADS"] = num_threads
    request = ov.Core().compile_model(str(onnx_file), "CPU", config).create_infer_request()

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = request.infer({0: x})  # copies outputs (share_outputs=False): safe to keep
        return out[0], out[1]
    return run


ENGINE_BUILDERS = {"onnxruntime": _onnxruntime, "openvino": _openvino}


@dataclass(frozen=True)
class Engine:
    name: str
    run: Runner
    max_abs_err: float  # features vs torch on the sample batch
    setup_seconds: float  # export + compile + the check


@torch.inference_mode()
def _torch_reference(path: FeaturePath, sample: torch.Tensor) -> np.ndarray:
    return path(sample)[0].float().numpy()  # (B, D)


def build_engine(name: str, path: FeaturePath, sample: torch.Tensor, num_threads: int = 0,
                 bf16: bool = False) -> Engine:
    """Export `path` (a CPU f32 module) to ONNX, compile it with engine `name` and check it
    against torch on `sample` (a batch of model input)."""
    if name not in ENGINE_BUILDERS:
        raise FclensError(f"params.yaml extract.engine: {name!r}; CPU engines here are "
                          f"{sorted(ENGINE_BUILDERS)} (and torch)")
    if bf16 and name == "onnxruntime":
        raise FclensError("params.yaml extract.amp: 'bf16' with extract.engine 'onnxruntime': "
                          "ONNX Runtime's CPU provider runs f32 only; use amp none, or engine "
                          "openvino or torch for bf16")
    require(name)  # before the export: a missing package fails fast with the pip line
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fclens-onnx-") as d:
        onnx_file = Path(d) / "model.onnx"
        export_onnx(path, sample, onnx_file)
        run = ENGINE_BUILDERS[name](onnx_file, num_threads, bf16)  # reads the file fully
    ref = _torch_reference(path, sample)  # (B, D)
    got = run(np.ascontiguousarray(sample.numpy()))[0]
    err = check_features(name, got, ref, bf16)
    seconds = time.perf_counter() - t0
    log.info("engine %s: exported and compiled in %.1f s; features vs torch max abs err %.2e",
             name, seconds, err)
    return Engine(name, run, err, seconds)


# model -> (key, engine): extract() runs once per part of a split (and a Ray actor once per
# batch), and an export costs seconds, so the engine of an unchanged model is reused
_CACHE: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, Engine]] = weakref.WeakKeyDictionary()


def _weights_token(model: nn.Module) -> tuple | None:
    """Changes when any weight does: an in-place update bumps the tensor's version counter, a
    replaced tensor has another address. None if untrackable (inference-mode tensors)."""
    try:
        return tuple((t.data_ptr(), t._version)
                     for t in itertools.chain(model.parameters(), model.buffers()))
    except RuntimeError:  # "Inference tensors do not track version counter"
        return None


def engine_for(name: str, path: FeaturePath, sample: torch.Tensor, num_threads: int = 0,
               bf16: bool = False) -> Engine:
    """`build_engine`, reused while the model's weights, normalization, input shape (less the
    batch axis) and settings are those it was built and checked with; a reuse has
    setup_seconds 0."""
    token = _weights_token(path.model)
    key = (name, tuple(sample.shape[1:]), sample.dtype, num_threads, bf16, token,
           tuple(path.norm.scale.flatten().tolist()), tuple(path.norm.shift.flatten().tolist()))
    hit = _CACHE.get(path.model)
    if token is not None and hit is not None and hit[0] == key:
        return replace(hit[1], setup_seconds=0.0)
    eng = build_engine(name, path, sample, num_threads, bf16)
    if token is not None:
        _CACHE[path.model] = (key, eng)
    return eng


def check_features(name: str, got: np.ndarray, ref: np.ndarray, bf16: bool = False) -> float:
    """Max abs error of engine features `got` vs torch's `ref` (B, D); FclensError past the
    tolerance (F32_TOL, or BF16_REL_TOL of the largest feature for bf16)."""
    if got.shape != ref.shape:
        raise FclensError(f"params.yaml extract.engine: {name!r} returned features of shape "
                          f"{got.shape}; torch gives {ref.shape} on the same batch")
    err = float(np.abs(got.astype(np.float64) - ref).max()) if ref.size else 0.0
    tol = BF16_REL_TOL * float(np.abs(ref).max(initial=0.0)) if bf16 else F32_TOL
    if not err <= tol:  # also catches nan
        raise FclensError(f"params.yaml extract.engine: {name!r} features differ from torch on "
                          f"the first batch by max abs {err:.3g} (allowed {tol:.3g}); use "
                          f"extract.engine: torch for this model")
    return err


def for_config(cfg) -> tuple[str, Callable] | None:
    """The engine params.yaml `extract` asks for, as extract()'s `engine` argument: None for
    torch, and on CUDA, which always runs torch (an engine there is ignored with a warning, so
    one params.yaml serves CPU and GPU hosts with device: auto)."""
    if cfg.engine == "torch":
        return None
    dev = resolve_device(cfg.device)
    if dev.type != "cpu":
        log.warning("params.yaml extract.engine: %r ignored on %s; CUDA runs torch", cfg.engine,
                    dev)
        return None
    bf16 = cfg.amp == "bf16"
    return cfg.engine, lambda path, x: engine_for(cfg.engine, path, x, cfg.num_threads, bf16)
