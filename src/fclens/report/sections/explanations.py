"""Visual explanations: metrics/<m>/explain.json and plots/explain/<m>/<method>.png."""

from __future__ import annotations

from fclens.report.doc import Inputs
from fclens.report.fmt import CAM_NAMES, figure, num, table


def section_explanations(inp: Inputs) -> list[str]:
    kinds = {**{m: "test images" for m in inp.feature_models},
             **{m: "photographs" for m in inp.photo_models}}
    if not kinds:
        return ["No model to explain (`feature_models` and `explain.photo_models` are empty).",
                ""]
    docs = {m: inp.json(f"metrics/{m}/explain.json") for m in kinds}
    lines = ["Targets are linear in the pooled features: the class logit, and unweighted sums of "
             "the split tree's terminal neurons, its two root branches and the Algorithm-1 "
             "indices. Maps are taken at the map that feeds the global pooling. The last-but-one "
             "column checks the implementation on the real model: Grad-CAM of a logit must equal "
             "ReLU(CAM)/(h·w) for a GAP + linear head.", ""]
    lines += table(["model", "images", "maps", "device", "max rel. err Grad-CAM vs CAM",
                    "targets"],
                   [[f"{m} ({kinds[m]})", str(e["n_images"]), str(e["n_maps"]), e["device"],
                     num(e["gradcam_vs_cam_max_rel_err"]), ", ".join(e["targets"])]
                    for m, e in docs.items()])
    for m, e in docs.items():
        lines += [f"### {m}", ""]
        for mth in e["methods"]:
            lines += figure(inp.png(f"plots/explain/{m}/{mth}.png"),
                            f"{m}, {CAM_NAMES.get(mth, mth)} on {kinds[m]}: each row an image, "
                            f"then one map per target ({', '.join(e['targets'])}).")
    return lines
