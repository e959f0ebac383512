"""params.yaml -> validated plain values. Every stage reads params through `load_params`.

Validation runs over the whole file before any stage does work, so a typo in one section fails
fast, naming the key and the allowed values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .io import FclensError, parse_checksum

PARAMS_FILE = "params.yaml"


def _get(d: dict, dotted: str) -> Any:
    cur: Any = d
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise FclensError(f"params.yaml: missing key {dotted}")
        cur = cur[part]
    return cur


def require_int(d: dict, key: str, lo: int | None = None, hi: int | None = None) -> int:
    v = _get(d, key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise FclensError(f"params.yaml {key}: expected an integer, got {v!r} ({type(v).__name__})")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = f"{lo if lo is not None else '-inf'}..{hi if hi is not None else 'inf'}"
        raise FclensError(f"params.yaml {key}: {v} is outside the allowed range {rng}")
    return v


def require_float(d: dict, key: str, lo: float | None = None, hi: float | None = None) -> float:
    v = _get(d, key)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise FclensError(f"params.yaml {key}: expected a number, got {v!r} ({type(v).__name__})")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise FclensError(f"params.yaml {key}: {v} is outside the allowed range {lo}..{hi}")
    return float(v)


def require_choice(d: dict, key: str, choices: tuple[str, ...]) -> str:
    v = _get(d, key)
    if v not in choices:
        raise FclensError(f"params.yaml {key}: {v!r}; allowed values: {', '.join(choices)}")
    return v


def require_bool(d: dict, key: str) -> bool:
    v = _get(d, key)
    if not isinstance(v, bool):
        raise FclensError(f"params.yaml {key}: expected true or false, got {v!r}")
    return v


def validate(p: dict, check_archs: bool = True) -> None:
    """Check every section this project reads. Raises FclensError naming the first bad key."""
    require_int(p, "seed", 0)
    datasets = _get(p, "datasets")
    for name, d in datasets.items():
        if isinstance(d, dict) and d.get("folder"):
            if not isinstance(d["folder"], str):
                raise FclensError(f"params.yaml datasets.{name}.folder: expected a path, got "
                                  f"{d['folder']!r}")
            continue
        for k in ("archive", "checksum"):
            _get(p, f"datasets.{name}.{k}")
        parse_checksum(d["checksum"], f"params.yaml datasets.{name}.checksum")
        if d.get("download"):
            for k in ("url", "checksum", "archive"):
                _get(p, f"datasets.{name}.download.{k}")
    models = _get(p, "models")
    for name, d in models.items():
        spec = ModelSpec.from_params(name, d)
        if check_archs:
            check_arch(spec)
        if d.get("checksum"):
            parse_checksum(d["checksum"], f"params.yaml models.{name}.checksum")
    for m, ds in (_get(p, "feature_models") or {}).items():
        if m not in models:
            raise FclensError(f"params.yaml feature_models.{m}: unknown model; allowed: "
                              f"{', '.join(models)}")
        if ds not in datasets:
            raise FclensError(f"params.yaml feature_models.{m}: unknown dataset {ds!r}; allowed: "
                              f"{', '.join(datasets)}")
    require_choice(p, "extract.amp", ("none", "bf16", "fp16"))
    require_int(p, "extract.batch_size", 1)
    require_int(p, "extract.num_threads", 0)
    require_int(p, "extract.num_workers", 0)
    require_int(p, "extract.row_group_size", 1)
    require_bool(p, "extract.channels_last")
    require_bool(p, "extract.pin_memory")
    dev = _get(p, "extract.device")
    if not (dev in ("auto", "cpu", "cuda") or str(dev).startswith("cuda:")):
        raise FclensError(f"params.yaml extract.device: {dev!r}; allowed: auto, cpu, cuda, cuda:N")
    for section, check in _SECTION_CHECKS.items():
        if section in p:
            check(p)


# Allowed values live here (the modules import them) so that validating params.yaml imports
# no science code: every stage depends on this file, not on every module.
NOISE_MODES = ("standard_normal", "feature_stats", "zero", "train_mean")
TREE_MODES = ("chain", "full")
CAM_METHODS = ("gradcam", "gradcampp", "smooth_gradcampp")
OPTIMIZERS = ("adam", "sgd")


def _int_list(p: dict, key: str) -> None:
    vals = _get(p, key)
    if not isinstance(vals, list) or not vals or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in vals):
        raise FclensError(f"params.yaml {key}: {vals!r}; expected a non-empty list of positive "
                          f"integers")


def _choices(p: dict, key: str, allowed: tuple[str, ...]) -> None:
    vals = _get(p, key)
    if not isinstance(vals, list) or not vals or any(v not in allowed for v in vals):
        raise FclensError(f"params.yaml {key}: {vals!r}; expected a non-empty list of "
                          f"{', '.join(allowed)}")


def _check_ablate(p: dict) -> None:
    _choices(p, "ablate.noise_modes", NOISE_MODES)
    require_choice(p, "ablate.noise", NOISE_MODES)
    require_int(p, "ablate.n_random", 0)


def _check_trees(p: dict) -> None:
    require_choice(p, "trees.mode", TREE_MODES)
    require_int(p, "trees.min_size", 2)


def _check_decompose(p: dict) -> None:
    require_int(p, "decompose.k1", 1)
    require_int(p, "decompose.k2", 1)
    require_int(p, "decompose.epochs", 0)
    require_float(p, "decompose.lr", 0.0)
    require_int(p, "decompose.batch_size", 1)
    require_choice(p, "decompose.optimizer", OPTIMIZERS)
    require_int(p, "decompose.finetune.epochs", 0)
    require_float(p, "decompose.finetune.lr", 0.0)
    require_int(p, "decompose.finetune.batch_size", 1)
    _int_list(p, "decompose.grid.k1")
    _int_list(p, "decompose.grid.k2")


def _check_explain(p: dict) -> None:
    _choices(p, "explain.methods", CAM_METHODS)
    require_int(p, "explain.n_samples", 1)
    require_float(p, "explain.sigma", 0.0)
    require_int(p, "explain.n_correct", 0)
    require_int(p, "explain.n_wrong", 0)
    require_int(p, "explain.max_folder_images", 1)
    models = set(_get(p, "models"))
    for m in _get(p, "explain.photo_models") or []:
        if m not in models:
            raise FclensError(f"params.yaml explain.photo_models: unknown model {m!r}; allowed: "
                              f"{', '.join(sorted(models))}")


def check_feature_dim(p: dict, dim: int, model: str) -> None:
    """decompose.k1/k2 and the grid need a model's feature dimension: checked by the stages that
    build the model (extract_*), before they extract anything."""
    for key in ("decompose.k1", "decompose.k2", "decompose.grid.k1", "decompose.grid.k2"):
        vals = _get(p, key)
        for v in vals if isinstance(vals, list) else [vals]:
            if v > dim:
                raise FclensError(f"params.yaml {key}: {v} exceeds the feature dimension of "
                                  f"{model} ({dim}); allowed: 1..{dim}")


def _check_pictures(p: dict) -> None:
    require_int(p, "pictures.max_tiles", 1)


_SECTION_CHECKS = {"ablate": _check_ablate, "trees": _check_trees,
                   "decompose": _check_decompose, "explain": _check_explain,
                   "pictures": _check_pictures}


# ---------------------------------------------------------------- model entries

_CIFAR_RESNET = re.compile(r"^cifar_resnet(\d+)$")


@dataclass(frozen=True)
class ModelSpec:
    """One entry of params.yaml `models:`."""

    name: str
    arch: str
    weights: str = "random"  # random | hub | pypi | path
    checksum: str | None = None  # 'sha256:<hex>' of the weights file
    url: str | None = None  # publisher URL used when the file is absent
    num_classes: int | None = None

    @classmethod
    def from_params(cls, name: str, d: dict) -> ModelSpec:
        if not isinstance(d, dict) or "arch" not in d:
            raise FclensError(f"params.yaml models.{name}: expected a mapping with 'arch', got {d!r}")
        allowed = {"arch", "weights", "checksum", "url", "num_classes"}
        if extra := set(d) - allowed:
            raise FclensError(f"params.yaml models.{name}: unknown keys {sorted(extra)}; "
                              f"allowed: {sorted(allowed)}")
        return cls(name=name, **{k: d[k] for k in allowed if d.get(k) is not None})


def check_arch(spec: ModelSpec) -> None:
    """Fail before any work on an architecture name nobody can build."""
    if m := _CIFAR_RESNET.match(spec.arch):
        depth = int(m.group(1))
        if depth < 8 or (depth - 2) % 6:
            raise FclensError(f"params.yaml models.{spec.name}.arch: {spec.arch}: depth must be "
                              f"6n+2 (8, 14, 20, 32, 44, 56, ...)")
        return
    import timm

    if not timm.is_model(spec.arch):
        raise FclensError(
            f"params.yaml models.{spec.name}.arch: unknown architecture {spec.arch!r}; allowed: "
            f"cifar_resnet<6n+2> or a timm model name (timm.list_models())")


def load_params(path: str | Path = PARAMS_FILE, check_archs: bool = True) -> dict:
    path = Path(path)
    if not path.exists():
        raise FclensError(f"{path}: not found; run from the project root")
    try:
        p = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise FclensError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(p, dict):
        raise FclensError(f"{path}: expected a mapping at the top level")
    validate(p, check_archs)
    return p


def extract_config(p: dict):
    from .extract import ExtractConfig

    return ExtractConfig(**p["extract"])


def model_spec(p: dict, name: str) -> ModelSpec:
    if name not in p["models"]:
        raise FclensError(f"params.yaml models: no model {name!r}; allowed: {', '.join(p['models'])}")
    return ModelSpec.from_params(name, p["models"][name])
