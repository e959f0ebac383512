"""Weight banding: metrics/<m>/banding.json, the GAP-vs-flatten experiment
(metrics/banding_experiment.json) and plots/pictures/<m>/banding_by_depth.png
(fclens.analysis.banding).

Numbers are shown only as the JSON holds them.
"""

from __future__ import annotations

from fclens.report.doc import Inputs
from fclens.report.fmt import figure, num, pct, table

EXPERIMENT_JSON = "metrics/banding_experiment.json"

BANDING_NOTE = (
    "Banding score of a spatial convolution: for every (output, input) kernel, after removing "
    "its spatial mean, the share of its energy in the row means (**horizontal**: the part "
    "constant along each row, i.e. horizontal stripes) or in the column means (**vertical**), "
    "averaged over the layer's kernels. White-noise kernels score `chance` = (k-1)/(k²-1) on "
    "average (0.25 for 3x3). Last layer: the last spatial conv, the one feeding the pooling in "
    "a CIFAR ResNet; max layer: the one with the highest horizontal score, shown in the weight "
    "banding picture under Parameters as pictures.")


def experiment_verdict(e: dict) -> str:
    """Distill's claim, judged by `claim_holds` (GAP above flatten in every seed)."""
    seeds = e["seeds"]
    per_seed = "; ".join(f"seed {s}: GAP {num(g, '.4f')} vs flatten {num(f, '.4f')}"
                         for s, g, f in zip(seeds, e["gap_last_layer_horizontal_by_seed"],
                                            e["flatten_last_layer_horizontal_by_seed"]))
    if e["claim_holds"]:
        head = ("**Distill's claim holds here**: the last conv layer is more horizontally "
                "banded with global average pooling than with the map flattened, in every seed")
    else:
        head = ("**Distill's claim does not hold here**: global average pooling does not give "
                "the last conv layer a higher horizontal banding score than the flattened map "
                "in every seed")
    return f"{head} ({per_seed}; chance {num(e['chance'], '.4f')})."


def training_note(e: dict) -> str:
    """Banding develops during training, so a net trained further could band more for that
    reason alone: say which variant the test accuracy puts ahead."""
    if e["test_acc_gap"] is None or e["test_acc_flatten"] is None:
        return ""
    if e["test_acc_gap"] < e["test_acc_flatten"]:
        return ("The GAP nets reach the lower test accuracy in the same epochs, so a higher "
                "GAP score cannot come from being further along in training.")
    return ("Caveat: the GAP nets also reach the higher test accuracy, and banding develops "
            "during training, so part of a difference may be training progress rather than "
            "the pooling.")


def section_banding(inp: Inputs) -> list[str]:
    docs = {m: inp.json(f"metrics/{m}/banding.json") for m in inp.models}
    lines = [BANDING_NOTE, ""]
    lines += table(["model", "spatial convs", "last layer", "last: horizontal", "last: vertical",
                    "median of other layers (horizontal)", "chance (last)",
                    "max layer (horizontal)"],
                   [[m, str(b["n_layers"]), f"`{b['last_layer']}`",
                     num(b["last_layer_horizontal"]), num(b["last_layer_vertical"]),
                     num(b["median_other_layers_horizontal"]), num(b["chance"]),
                     f"`{b['max_layer']}` ({num(b['max_layer_horizontal'])}, chance "
                     f"{num(b['max_layer_chance'])})"] for m, b in docs.items()])
    for m in inp.models:
        lines += figure(inp.png(f"plots/pictures/{m}/banding_by_depth.png"),
                        f"{m}: horizontal and vertical banding score of every spatial conv in "
                        f"depth order, with the white-noise chance level.")
    e = inp.json(EXPERIMENT_JSON)
    lines += ["### Does global average pooling cause it?", "",
              f"Distill (\"Weight Banding\", 2021) traces the banding to the global average "
              f"pooling after the last conv layer. The test: the same small CNN (three 3x3 conv "
              f"layers) trained for {e['epochs']} epochs on {e['n_train']} CIFAR-10 training "
              f"images (class-balanced subset), once with global average pooling before the FC "
              f"layer and once with the final map flattened, for each of {len(e['seeds'])} "
              f"seeds; the score is the last conv layer's horizontal banding.", ""]
    lines += table(["seed", "GAP: horizontal", "flatten: horizontal", "GAP: test acc",
                    "flatten: test acc"],
                   [[str(s), num(g, ".4f"), num(f, ".4f"), pct(ag), pct(af)]
                    for s, g, f, ag, af in zip(e["seeds"], e["gap_last_layer_horizontal_by_seed"],
                                               e["flatten_last_layer_horizontal_by_seed"],
                                               e["test_acc_gap_by_seed"],
                                               e["test_acc_flatten_by_seed"])]
                   + [["mean", num(e["gap_last_layer_horizontal"], ".4f"),
                       num(e["flatten_last_layer_horizontal"], ".4f"), pct(e["test_acc_gap"]),
                       pct(e["test_acc_flatten"])]])
    return lines + [experiment_verdict(e) + " " + training_note(e), ""]
