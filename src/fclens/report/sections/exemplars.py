"""The report's exemplars section: per feature model, selectivity and purity of each class's
influential and terminal+ features (metrics/<m>/exemplars.json) beside its two figures."""

from __future__ import annotations

from fclens.report.doc import Inputs
from fclens.report.fmt import figure, num, table

PLOT_DIR = "plots/exemplars"  # <m>/{exemplars,activations}.png, written by the exemplars stage


def section_exemplars(inp: Inputs) -> list[str]:
    if not inp.feature_models:
        return ["No feature model (`feature_models` is empty): no exemplars.", ""]
    docs = {m: inp.json(f"metrics/{m}/exemplars.json") for m in inp.feature_models}
    rows = []
    for m, d in docs.items():
        pk = f"purity_at_{d['n_top']}_median"
        by = [d["by_source"][s] for s in ("influential", "terminal+")]
        rows.append([m, str(d["n_classes"]), str(d["n_features"]), num(d["selectivity_median"]),
                     num(d[pk]), *(f"{num(b['selectivity_median'])} / {num(b[pk])}" for b in by)])
    lines = ["Each class's Algorithm-1 influential features and its terminal+ neurons (its 5 "
             "largest FC weights), on the training images. Selectivity: (μ_c − μ_o) / (μ_c + "
             "μ_o), μ_c a feature's mean activation on the class, μ_o on the other classes (0 "
             "for a dead feature); purity@9: the share of the feature's 9 most activating "
             "training images that belong to the class. Medians over every class's distinct "
             "(class, feature) pairs; the figures show the classes of `explain.classes`.", ""]
    lines += table(["model", "classes", "(class, feature) pairs", "selectivity median",
                    "purity@9 median", "influential: sel. / purity", "terminal+: sel. / purity"],
                   rows)
    for m, d in docs.items():
        group = ", ".join(str(c) for c in d["classes_pictured"])
        lines += [f"### {m}", ""]
        lines += figure(inp.png(f"{PLOT_DIR}/{m}/exemplars.png"),
                        f"{m}: the {d['n_top']} training images of highest activation of each "
                        f"feature of classes {group}; row labels give the feature's rank among "
                        f"the class's influential (infl) and terminal+ (term+) features.")
        lines += figure(inp.png(f"{PLOT_DIR}/{m}/activations.png"),
                        f"{m}: each feature's activations on the class's training images "
                        f"(filled) and on the other classes' (line), as shares of the images.")
    return lines
