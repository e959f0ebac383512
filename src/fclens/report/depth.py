"""The depth study's table: decomposition, ablation and neural-collapse figures of each model, by
network depth."""

from __future__ import annotations

from pathlib import Path

from fclens.core.errors import FclensError
from fclens.core.io import read_json
from fclens.core.params import CIFAR_RESNET
from fclens.report.doc import Doc


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
                     "damage_noninfluential": abl["damage_noninfluential_per_class"],
                     "geometry": _geometry(Path(metrics_dir) / m / "geometry.json")})
    return sorted(rows, key=lambda r: r["depth"])


GEOMETRY_KEYS = ("nc1", "nc2_cos_shift_means", "nc3", "nc4", "ncc_acc")  # plotted against depth


def _geometry(path: Path) -> dict:
    """Per split, the neural-collapse figures drawn against depth (stage geometry)."""
    geo = Doc(_need(path, "train", "test"), str(path))  # a missing key names file and key
    return {split: {k: geo[split][k] for k in GEOMETRY_KEYS} for split in ("train", "test")}


def geometry_series(metrics: dict) -> tuple[list[int], dict[str, dict[str, list[float]]]]:
    """depths and, per figure of GEOMETRY_KEYS and split, its values in depth order, from
    depth.json's content."""
    rows = sorted(metrics["models"].values(), key=lambda r: r["depth"])
    return [r["depth"] for r in rows], {k: {s: [r["geometry"][s][k] for r in rows]
                                            for s in ("train", "test")} for k in GEOMETRY_KEYS}


def _need(path: Path, *keys: str) -> dict:
    d = read_json(path)
    missing = [k for k in keys if k not in d]
    if missing:
        raise FclensError(f"{path}: no key {', '.join(missing)}; rerun the stage that writes "
                          f"it (dvc repro)")
    return d


def depth_study(metrics_dir: str | Path, models: list[str], archs: dict[str, str]
                ) -> tuple[dict, list[list]]:
    """depth.json's content and the plot's series (depths, rel_acc, damage, damage_non)."""
    rows = depth_rows(metrics_dir, models, archs)
    series = [[r[k] for r in rows] for k in ("depth", "rel_acc", "damage_influential",
                                             "damage_noninfluential")]
    return {"models": {r["model"]: r for r in rows}}, series
