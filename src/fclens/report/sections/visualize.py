"""The report's maximum-response section, from metrics/<m>/visualize.json and
plots/visualize/<m>/{<objective>,exemplars}.png (stage visualize, one per `visualize.models`).

Every number is read from the metrics, never typed.
"""

from __future__ import annotations

from fclens.report.doc import Inputs
from fclens.report.fmt import figure, num, pct, table

INTRO = (
    "The lecture's fifth way: for every class, an image that maximizes its class logit, its "
    "decomposed logit x[I_c]·W[c, I_c] + b_c (Algorithm-1 set) and its top chain-terminal "
    "channel, by MACO (Fel et al. 2023: phase optimized, magnitude fixed to the spectrum of the "
    "model's own training images or of the sample photos, computed by the `spectrum` stage) and "
    "by the Fourier parameterization with transformation robustness (Olah et al. 2017); all "
    "classes and objectives of a model are one batch per method. Self-rate: the share of "
    "images the source model classifies as their class (control in brackets: the same for the "
    "seeded start images, before any step). Transfer: the share the other models with the same "
    "classes classify as the class (in brackets: each judge's accuracy on natural images of "
    "those classes). Plausibility: the mean cosine, in the source model's pooled-feature space, "
    "to natural images of the class against those of the other classes. The path check "
    "(Geirhos et al. 2023) asks the same per layer, for the logit images: a visualization "
    "processed like the class's images should sit nearer its class before the last layer too, "
    "as far as natural images do (the reference row: each natural image against its class's "
    "mean without itself).")


def _rates(d: dict) -> str:
    return ", ".join(f"{j.removeprefix('cifar_').removeprefix('tf_efficientnet_')} "
                     f"{pct(v)} ({pct(d['transfer_rate_natural'][j])})"
                     for j, v in d["transfer_rate"].items()) or "no judge"


def section_visualize(inp: Inputs) -> list[str]:
    if not inp.visualize_models:
        return ["Not run: `visualize.models` is empty.", ""]
    lines = [INTRO, ""]
    for m in inp.visualize_models:
        v = inp.json(f"metrics/{m}/visualize.json")
        lines += [f"### {m}", "",
                  f"{v['n_classes_visualized']} classes x {len(v['objectives'])} objectives, "
                  f"{v['steps']} steps, {v['n_crops']} augmented copies per step, side "
                  f"{v['batch'][-1]}; decomposed set: {v['decomposed_set']}; spectrum: "
                  f"{v['spectrum']['images']} of {v['spectrum']['source']}; natural images: "
                  f"{v['natural']['source']}.", ""]
        rows = []
        for meth, mv in v["methods"].items():
            for obj, d in mv["objectives"].items():
                rows.append([meth, obj, f"{pct(d['self_rate'])} ({pct(d['self_rate_start'])})",
                             _rates(d), f"{num(d['plausibility_same'])} vs "
                             f"{num(d['plausibility_other'])}"])
        lines += table(["method", "objective", "self-rate (start)", "transfer (natural)",
                        "plausibility: same vs other"], rows)
        pc = [[meth, *[f"{num(a)} / {num(b)}" for a, b in
                       zip(mv["path_check"]["same_class"], mv["path_check"]["other_class"])]]
              for meth, mv in v["methods"].items()]
        first = next(iter(v["methods"].values()))["path_check"]
        pc.append(["natural images (reference)",
                   *[f"{num(a)} / {num(b)}" for a, b in
                     zip(first["natural_same_class"], first["natural_other_class"])]])
        layers = first["layers"]
        lines += table(["path check: same / other", *layers], pc)
        for obj in v["objectives"]:
            lines += figure(inp.png(f"plots/visualize/{m}/{obj}.png"),
                            f"{m}: {obj}, MACO beside Fourier (p: the model's probability of "
                            f"the class), MACO's transparency")
        lines += figure(inp.png(f"plots/visualize/{m}/exemplars.png"),
                        f"{m}: each visualization beside the training images with the largest "
                        f"value of the same target")
    return lines
