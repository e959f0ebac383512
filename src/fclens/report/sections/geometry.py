"""Neural collapse: metrics/<m>/geometry.json (stages geometry, geometry_weights) and
plots/geometry_depth.png (depth_study)."""

from __future__ import annotations

from fclens.report.doc import Inputs
from fclens.report.fmt import figure, num, pct, table


def ncc_verdict(model: str, split: str, ncc: float, head: float) -> str:
    """Whether the nearest-class-centre rule beats the trained head, in plain words."""
    gap = 100 * (ncc - head)
    how = "beats" if gap > 0 else "ties with" if gap == 0 else "loses to"
    return (f"- {model}, {split}: the nearest-class-centre rule ({pct(ncc)}) {how} the trained "
            f"head ({pct(head)}), {gap:+.2f} points.")


def section_geometry(inp: Inputs) -> list[str]:
    lines = ["Neural collapse (Papyan, Han & Donoho 2020) of the penultimate features and the FC "
             "weights; every figure is 0 at full collapse onto a simplex equiangular tight "
             "frame. NC1 = Tr(Σ_W Σ_B⁺)/C (within-class spread against the spread of the class "
             "means); NC2: coefficient of variation of the centred class means' norms, and mean "
             "|cos + 1/(C-1)| of their pairwise cosines, of the means and of the weight rows "
             "(W); NC3 = ‖W/‖W‖ - M/‖M‖‖² (classifier against means); NC4: the share of images "
             "where the FC prediction and the nearest class centre (train means) disagree.", ""]
    rows, verdicts = [], []
    for m in inp.feature_models:
        g = inp.json(f"metrics/{m}/geometry.json")
        e = inp.json(f"metrics/{m}/extract.json")
        for split in ("train", "test"):
            s = g[split]
            head = e[f"acc_{split}"]
            ctl = s["control_shuffled_labels"]
            rows.append([m, split, num(s["nc1"]), num(ctl["nc1"]), num(s["nc2_norm_cv_means"]),
                         num(s["nc2_cos_shift_means"]), num(s["nc2_cos_shift_w"]), num(s["nc3"]),
                         pct(s["nc4"]), pct(s["ncc_acc"]), pct(ctl["ncc_acc"]), pct(head)])
            verdicts.append(ncc_verdict(m, split, s["ncc_acc"], head))
    if rows:
        lines += table(["model", "split", "NC1", "NC1 shuffled", "NC2 norm CV", "NC2 cos (means)",
                        "NC2 cos (W)", "NC3", "NC4", "nearest centre acc", "shuffled",
                        "head acc"], rows)
        lines += ["Control (shuffled): the same features with their labels shuffled (same class "
                  "sizes, `seed`), i.e. no class structure: real collapse sits far below its NC1 "
                  "and far above its nearest-centre accuracy (chance).", ""]
        lines += verdicts + [""]
    else:
        lines += ["No feature model (`feature_models` is empty): no features to measure.", ""]
    if inp.geometry_weight_models:
        wrows = []
        for m in inp.geometry_weight_models:
            w = inp.json(f"metrics/{m}/geometry.json")["weights"]
            wrows.append([m, num(w["nc2_norm_cv_w"]), num(w["nc2_cos_std_w"]),
                          num(w["nc2_cos_shift_w"])])
        lines += ["Models without a dataset (`geometry.weight_models`): the weight rows alone.", ""]
        lines += table(["model", "NC2 norm CV (W)", "NC2 cos std (W)", "NC2 cos (W)"], wrows)
    if inp.depth_models:
        lines += figure(inp.png("plots/geometry_depth.png"),
                        "neural-collapse figures of the depth study's models against depth, "
                        "train (solid) and test (dashed).")
    return lines
