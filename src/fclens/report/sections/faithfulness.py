"""The report's faithfulness section, from metrics/<m>/faithfulness.json and
plots/faithfulness/<m>.png (stages faithfulness_dataset / faithfulness_photos).
"""

from __future__ import annotations

from fclens.core.errors import FclensError
from fclens.report.doc import Inputs
from fclens.report.fmt import figure, num, table

ORDER = ("logit", "terminal+", "terminal-", "branch+", "branch-", "influential", "random")

INTRO = (
    "Are the maps (Grad-CAM++ by default) faithful to the model? Pixels are removed (deletion) "
    "or added (insertion) in the map's order against a blurred copy of the image, in equal "
    "steps, and the area under the predicted class's probability is taken: lower deletion and "
    "higher insertion mean the map found what the model uses. Average Drop and Increase in "
    "Confidence score the image multiplied by its map. The control is a random channel set of "
    "the influential set's size (mean over seeds); \"gap vs random\" is a target's (insertion - "
    "deletion) gap minus the control's, with a bootstrap 95% interval over images. The last two "
    "columns are the weight-randomization sanity check (Adebayo et al. 2018): the median "
    "Spearman correlation between the map of the trained model and that of the same network "
    "with its last block (FC kept) or every layer (FC included) replaced by noise, at the map's "
    "own resolution. A map that depends on what the model learned has a low correlation.")


def _ci(t: dict) -> str:
    if "gap_vs_random" not in t:
        return "(control)"
    lo, hi = t["gap_vs_random_ci95"]
    return f"{num(t['gap_vs_random'])} [{num(lo)}, {num(hi)}]"


def verdict(f: dict) -> str:
    """Which target is the most faithful, and whether the random control scores worse than all
    of them judged by the intervals (and if not, which ones it does not)."""
    targets = f["targets"]
    best = f["most_faithful"]
    lines = (f"The most faithful target (largest insertion - deletion gap) is **{best}** "
             f"(gap {num(targets[best]['gap'])}, random control {num(targets['random']['gap'])}).")
    lo, hi = targets[best]["gap_vs_random_ci95"]
    if tied := [t for t in ORDER if t in targets and t not in ("random", best)
                and targets[t]["gap_vs_random_ci95"][1] >= lo]:
        lines += (f" Its interval overlaps that of {', '.join(tied)}, so these images do not "
                  f"rank {'them' if len(tied) > 1 else 'the two'} apart.")
    not_above = [t for t in ORDER if t in targets and t != "random"
                 and not targets[t]["gap_vs_random_ci95"][0] > 0]
    if f["random_worse_than_all"] and not not_above:
        return lines + " The random control scores worse than every target: each interval of " \
                       "the gap vs random lies above 0."
    return lines + (" The random control does **not** score worse than every target: the "
                    "interval of " + ", ".join(not_above) + " does not lie above 0.")


def by_method(f: dict) -> list[str]:
    """Every map method of params faithfulness.methods on the same images, targets and control:
    which one is the most faithful per target, as measured here."""
    meths = f.get("by_method") or {}
    if len(meths) < 2:
        return [f"Only {f['method']} was measured (params `faithfulness.methods`).", ""]
    targets = [t for t in ORDER if t in f["targets"] and t != "random"]
    rows = [[m, t, num(b["targets"][t]["deletion_auc"]), num(b["targets"][t]["insertion_auc"]),
             _ci(b["targets"][t]), num(b["sanity_rank_corr"][t]["all"])
             if b["sanity_rank_corr"][t]["all"] is not None else "-"]
            for t in targets for m, b in meths.items()]
    lines = ["Grad-CAM++ against the input-gradient methods (vanilla gradient, SmoothGrad, "
             "Integrated Gradients from the blurred baseline; captum), each through the same "
             "deletion / insertion protocol, images, targets and random-channel control:", ""]
    lines += table(["method", "target", "deletion AUC ↓", "insertion AUC ↑",
                    "gap vs random [95% CI]", "sanity ρ all layers"], rows)
    said, over = [], []
    for t in targets:
        best = max(meths, key=lambda m: meths[m]["targets"][t]["gap"])
        lo = meths[best]["targets"][t]["gap_vs_random_ci95"][0]
        said.append(f"{t}: **{best}** (gap {num(meths[best]['targets'][t]['gap'])}; its gap vs "
                    f"random {'lies above 0' if lo > 0 else 'does not lie above 0'})")
        top = max(meths, key=lambda m: meths[m]["targets"][t]["gap_vs_random"])
        over.append(f"{t}: **{top}** ({num(meths[top]['targets'][t]['gap_vs_random'])})")
    return lines + ["Most faithful method per target, by the mean insertion - deletion gap: "
                    + "; ".join(said) + ". By the gap over the method's own random control "
                    "instead (a map of random channels is itself better or worse per method): "
                    + "; ".join(over) + ". The intervals compare each method with its own "
                    "control, not two methods with each other.", ""]


def _sanity(f: dict, t: str, scope: str) -> str:
    s = f["sanity_rank_corr"]
    return num(s[t][scope]) if t in s else "-"


def section_faithfulness(inp: Inputs) -> list[str]:
    models = list(dict.fromkeys([*inp.feature_models, *inp.photo_models]))
    if not models:
        return ["No model to measure (`feature_models` and `explain.photo_models` are empty).",
                ""]
    docs = {m: inp.json(f"metrics/{m}/faithfulness.json") for m in models}
    lines = [INTRO, ""]
    for m, f in docs.items():
        targets = f["targets"]
        if "random" not in targets:
            raise FclensError(f"metrics/{m}/faithfulness.json: no targets.random (the control); "
                              f"rerun the faithfulness stage (dvc repro)")
        kind = "test images" if m in inp.feature_models else "photographs"
        lines += [f"### {m}", "",
                  f"{f['n_images']} {kind}, {f['method']} maps, {f['steps']} steps, baseline "
                  f"{f['baseline']} (σ = {f['blur_sigma']} of the image side), random control: "
                  f"{f['n_random']} sets of the {f['random_size_of']} size.", ""]
        if f["random_size_of"] != "influential":
            lines += ["No dataset for this model, so no Algorithm-1 (influential) set: the "
                      "random sets take the terminal+ size instead. With this few images the "
                      "intervals are wide.", ""]
        rows = [[t, num(v["deletion_auc"]), num(v["insertion_auc"]), _ci(v),
                 num(v["average_drop"]), num(v["increase_confidence"]),
                 _sanity(f, t, "last_block"), _sanity(f, t, "all")]
                for t, v in sorted(targets.items(), key=lambda kv: ORDER.index(kv[0])
                                   if kv[0] in ORDER else len(ORDER))]
        lines += table(["target", "deletion AUC ↓", "insertion AUC ↑", "gap vs random [95% CI]",
                        "average drop ↓", "increase in confidence ↑",
                        "sanity ρ last block", "sanity ρ all layers"], rows)
        lines += [verdict(f), ""]
        lines += by_method(f)
        lines += figure(inp.png(f"plots/faithfulness/{m}.png"),
                        f"{m}: mean deletion and insertion curves per target (random: dashed).")
    return lines
