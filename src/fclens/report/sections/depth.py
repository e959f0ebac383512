"""Depth study: metrics/depth.json and plots/depth.png (stage depth_study)."""

from __future__ import annotations

from fclens.core.errors import FclensError
from fclens.report.doc import Inputs
from fclens.report.fmt import figure, num, pct, table


def depth_verdict(rel_by_depth: list) -> str:
    if any(r is None for r in rel_by_depth):
        return "is undefined for some models (original accuracy 0), so it cannot say."
    if len(rel_by_depth) < 2:
        return "cannot be judged from fewer than two depths."
    if all(b >= a for a, b in zip(rel_by_depth, rel_by_depth[1:])):
        return "rises monotonically with depth."
    return "does **not** rise monotonically with depth."


def section_depth(inp: Inputs) -> list[str]:
    dep = inp.json("metrics/depth.json")
    models = dep["models"]
    if sorted(models) != sorted(inp.depth_models):
        raise FclensError(f"metrics/depth.json: has models {sorted(models)}, params "
                          f"depth_study.models has {sorted(inp.depth_models)}; rerun depth_study "
                          f"(dvc repro)")
    rows = sorted(models.values(), key=lambda v: v["depth"])
    lines = table(["model", "depth", "original", "rel acc", "rel acc retrained",
                   "damage influential", "damage non-influential"],
                  [[v["model"], str(v["depth"]), pct(v["acc_original"]), num(v["rel_acc"]),
                    num(v["rel_acc_retrained"]), pct(v["damage_influential"]),
                    pct(v["damage_noninfluential"])] for v in rows])
    lines += ["The paper claims deeper models decompose better; here relative accuracy "
              + depth_verdict([v["rel_acc"] for v in rows]) + " Damage: accuracy lost when the "
              "set is noised (per-class sets, the mode of `ablate.noise`).", ""]
    return lines + figure(inp.png("plots/depth.png"),
                          "relative accuracy (left) and ablation damage (right) against depth.")
