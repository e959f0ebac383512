"""Extraction: the penultimate features of each feature model (metrics/<m>/extract.json)."""

from __future__ import annotations

from fclens.report.doc import Inputs
from fclens.report.fmt import num, pct, table


def section_extraction(inp: Inputs) -> list[str]:
    if not inp.feature_models:
        return ["No feature model (`feature_models` is empty): no activations extracted.", ""]
    rows = []
    for m, ds in inp.feature_models.items():
        e = inp.json(f"metrics/{m}/extract.json")
        rows.append([m, ds, pct(e["acc_train"]), pct(e["acc_test"]), str(e["feature_dim"]),
                     e["device"], num(e["logit_max_abs_err"])])
    return (["Penultimate features: the global-pooled, post-ReLU input of the FC layer. The last "
             "column checks them: the FC layer applied to them must give the model's own "
             "logits.", ""]
            + table(["model", "dataset", "acc train", "acc test", "D", "device",
                     "max abs(FC(features) - logits)"], rows))
