"""The depth study's table: decomposition and ablation figures of each model, by network depth."""

from __future__ import annotations

from pathlib import Path

import yaml

from fclens.core.errors import FclensError
from fclens.core.io import read_json
from fclens.models.spec import CIFAR_RESNET


def arch_depth(model: str, arch: str) -> int:
    """The depth in an arch name such as cifar_resnet56."""
    m = CIFAR_RESNET.match(arch)
    if not m:
        raise FclensError(f"depth_study.models: {model!r} has arch {arch!r}; the depth study "
                          f"needs cifar_resnet<depth> models")
    return int(m.group(1))


def depth_rows(metrics_dir: Path, models: list[str], archs: dict[str, str]) -> list[dict]:
    """One row per model, sorted by depth, from metrics/<m>/decompose.json and ablate.json."""
    rows = []
    for m in models:
        dec = _need(Path(metrics_dir) / m / "decompose.json", "acc_original", "rel_acc",
                    "rel_acc_retrained")
        abl = _need(Path(metrics_dir) / m / "ablate.json", "damage_influential_per_class",
                    "damage_noninfluential_per_class")
        rows.append({"model": m, "depth": arch_depth(m, archs[m]),
                     "acc_original": dec["acc_original"], "rel_acc": dec["rel_acc"],
                     "rel_acc_retrained": dec["rel_acc_retrained"],
                     "damage_influential": abl["damage_influential_per_class"],
                     "damage_noninfluential": abl["damage_noninfluential_per_class"]})
    return sorted(rows, key=lambda r: r["depth"])


def _need(path: Path, *keys: str) -> dict:
    d = read_json(path)
    missing = [k for k in keys if k not in d]
    if missing:
        raise FclensError(f"{path}: no key {', '.join(missing)}; rerun the stage that writes "
                          f"it (dvc repro)")
    return d


def check_declared(models: list[str], dvc_yaml: Path = Path("dvc.yaml")) -> None:
    """Each model's metrics folder must be a dep of the depth_study stage in dvc.yaml.

    DVC cannot turn `depth_study.models` into deps, so dvc.yaml lists the folders by hand; a
    model added to the params without its folder would read files DVC does not track there.
    """
    if not Path(dvc_yaml).is_file():
        raise FclensError(f"{dvc_yaml}: not found; run the depth study from the project root")
    deps = yaml.safe_load(Path(dvc_yaml).read_text())["stages"]["depth_study"]["deps"]
    declared = {str(d).rstrip("/") for d in deps}
    if missing := [f"metrics/{m}" for m in models if f"metrics/{m}" not in declared]:
        raise FclensError(f"{dvc_yaml} stages.depth_study.deps: add {', '.join(missing)} "
                          f"(depth_study.models lists them)")


def depth_study(metrics_dir: str | Path, models: list[str], archs: dict[str, str]
                ) -> tuple[dict, list[list]]:
    """depth.json's content and the plot's series (depths, rel_acc, damage, damage_non)."""
    check_declared(models)
    rows = depth_rows(metrics_dir, models, archs)
    series = [[r[k] for r in rows] for k in ("depth", "rel_acc", "damage_influential",
                                             "damage_noninfluential")]
    return {"models": {r["model"]: r for r in rows}}, series
