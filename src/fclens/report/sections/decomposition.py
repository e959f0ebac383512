"""Decomposition (Algorithm 1): metrics/<m>/decompose.json of each feature model."""

from __future__ import annotations

from fclens.report.doc import Inputs
from fclens.report.fmt import num, pct, table


def section_decomposition(inp: Inputs) -> list[str]:
    if not inp.feature_models:
        return ["No feature model (`feature_models` is empty): nothing decomposed.", ""]
    rows = []
    for m in inp.feature_models:
        d = inp.json(f"metrics/{m}/decompose.json")
        rows.append([m, f"{d['k1']}/{d['k2']}", pct(d["acc_original"]), pct(d["acc_decomposed"]),
                     pct(d["acc_decomposed_retrained"]), num(d["rel_acc"]),
                     num(d["rel_acc_retrained"]), str(d["union_size"])])
    return (["The decomposed head keeps, for class c, only its influential features I_c: "
             "`logit_c = x[I_c]·W[c, I_c] + b_c`, with the original weights and retrained on the "
             "training features (DVCLive curves: `dvc plots show`). Relative accuracy is "
             "decomposed / original.", ""]
            + table(["model", "k1/k2", "original", "decomposed", "decomposed retrained",
                     "rel acc", "rel acc retrained", "union size"], rows))
