"""The report's single-sample activations section, from metrics/<m>/activations.json and
plots/activations/<m>/overview.png (stage activations, one per `activations.models` entry).

Every number is read from the metrics, never typed.
"""

from __future__ import annotations

from fclens.report.doc import Inputs
from fclens.report.fmt import figure, num, pct, table

INTRO = (
    "The lecture's second way: every stage's output on one image, as a grid of channel maps "
    "(`plots/activations/<m>/<image>.png`, one per explained image). The last stage is the map "
    "that is pooled into the FC features (`pooling error` checks it), and its channels that "
    "are the predicted class's chain terminals (terminal+) and Algorithm-1 indices are framed. "
    "The numbers: the share of the pooled activation and of the predicted logit's positive "
    "contributions (xᵢ·W[c,i] > 0) that each set carries, beside what a random channel set of "
    "the same size carries in expectation (|S|/D, exact), and the share of images where the "
    "set carries more.")


def section_activations(inp: Inputs) -> list[str]:
    if not inp.activation_models:
        return ["Not run: `activations.models` is empty.", ""]
    lines = [INTRO, ""]
    rows, figs = [], []
    for m in inp.activation_models:
        a = inp.json(f"metrics/{m}/activations.json")
        for name, s in a["sets"].items():
            rows.append([m, f"`{name}`", num(s["size"]),
                         f"{pct(s['activation_share'])} ({pct(s['activation_share_random'])})",
                         f"{pct(s['logit_share'])} ({pct(s['logit_share_random'])})",
                         pct(s["logit_share_above_random"]), str(s["n_images"])])
        figs += figure(inp.png(f"plots/activations/{m}/overview.png"),
                       f"{m}: {a['n_images']} images, last stage {a['last_stage']} (pooling "
                       f"error {num(a['pooling_max_abs_err'])})")
    lines += table(["model", "set", "mean size", "share of pooled activation (random)",
                    "share of logit+ (random)", "images above random", "images"], rows)
    return lines + figs
