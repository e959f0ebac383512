"""k1 x k2 grid: metrics/<m>/k_grid.json and plots/<m>/k_grid.png of each feature model."""

from __future__ import annotations

from fclens.report.doc import Inputs
from fclens.report.fmt import figure, pct, table


def section_k_grid(inp: Inputs) -> list[str]:
    if not inp.feature_models:
        return ["No feature model (`feature_models` is empty): no grid.", ""]
    lines = ["Decomposed accuracy without retraining for every k1 (top-k1 features per image) "
             "and k2 (features kept per class) of `decompose.grid`.", ""]
    for m in inp.feature_models:
        g = inp.json(f"metrics/{m}/k_grid.json")
        k1 = g["k1"][-1]
        lines += [f"### {m}", ""]
        lines += table(["original", "best decomposed", "best k1/k2",
                        f"k1 = {k1}, k2 = " + ", ".join(str(k) for k in g["k2"])],
                       [[pct(g["acc_original"]), pct(g["best_acc_decomposed"]),
                         f"{g['best_k1']}/{g['best_k2']}",
                         " ".join(pct(g["acc_decomposed"][f"k1={k1}"][f"k2={k}"])
                                  for k in g["k2"])]])
        lines += figure(inp.png(f"plots/{m}/k_grid.png"),
                        f"{m}: decomposed accuracy (no retraining) over k1 x k2.")
    return lines
