"""params.yaml -> validated plain values. Every stage reads params through `load_params`.

Validation runs over the whole file before any stage does work, so a typo in one section fails
fast, naming the key and the allowed values.
"""

from __future__ import annotations

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


def validate(p: dict) -> None:
    """Check every section this project reads. Raises FclensError naming the first bad key."""
    from .models import ModelSpec, check_arch

    require_int(p, "seed", 0)
    datasets = _get(p, "datasets")
    for name, d in datasets.items():
        for k in ("archive", "checksum"):
            _get(p, f"datasets.{name}.{k}")
        parse_checksum(d["checksum"], f"params.yaml datasets.{name}.checksum")
        if d.get("download"):
            for k in ("url", "checksum", "archive"):
                _get(p, f"datasets.{name}.download.{k}")
    models = _get(p, "models")
    for name, d in models.items():
        check_arch(ModelSpec.from_params(name, d))
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
    require_int(p, "extract.row_group_size", 1)
    require_bool(p, "extract.channels_last")
    require_bool(p, "extract.pin_memory")
    dev = _get(p, "extract.device")
    if not (dev in ("auto", "cpu", "cuda") or str(dev).startswith("cuda:")):
        raise FclensError(f"params.yaml extract.device: {dev!r}; allowed: auto, cpu, cuda, cuda:N")
    for section, check in _SECTION_CHECKS.items():
        if section in p:
            check(p)


_SECTION_CHECKS: dict = {}


def section_check(name: str):
    """Register the validator of a params section (used by the analysis modules)."""
    def deco(fn):
        _SECTION_CHECKS[name] = fn
        return fn
    return deco


def load_params(path: str | Path = PARAMS_FILE) -> dict:
    path = Path(path)
    if not path.exists():
        raise FclensError(f"{path}: not found; run from the project root")
    try:
        p = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise FclensError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(p, dict):
        raise FclensError(f"{path}: expected a mapping at the top level")
    # import the modules that register section validators
    from . import ablate, ald, decompose, trees  # noqa: F401
    validate(p)
    return p


def extract_config(p: dict):
    from .extract import ExtractConfig

    return ExtractConfig(**p["extract"])


def model_spec(p: dict, name: str):
    from .models import ModelSpec

    if name not in p["models"]:
        raise FclensError(f"params.yaml models: no model {name!r}; allowed: {', '.join(p['models'])}")
    return ModelSpec.from_params(name, p["models"][name])
