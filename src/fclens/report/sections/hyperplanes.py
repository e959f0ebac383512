"""Hyperplanes: F. Fleuret's two-moons MLP picture, metrics/hyperplanes.json and
plots/pictures/hyperplanes.png (fclens.analysis.hyperplanes)."""

from __future__ import annotations

from fclens.report.doc import Inputs
from fclens.report.fmt import figure, pct

HYPERPLANES_JSON = "metrics/hyperplanes.json"
HYPERPLANES_PNG = "plots/pictures/hyperplanes.png"


def section_hyperplanes(inp: Inputs) -> list[str]:
    h = inp.json(HYPERPLANES_JSON)
    acc = ", ".join(f"{it}: {pct(a)}" for it, a in zip(h["iterations"], h["train_acc"]))
    return ([f"F. Fleuret's picture of a 2-{h['n_hidden']}-2 ReLU MLP learning two moons "
             f"({h['n_points']} points, {h['steps']} full-batch Adam steps): each hidden unit "
             f"is the line where it switches on, and the network is linear between the lines, "
             f"so the decision boundary is built from pieces of them. Train accuracy by "
             f"iteration: {acc}; final {pct(h['final_train_acc'])}.", ""]
            + figure(inp.png(HYPERPLANES_PNG),
                     "hidden units' lines {x : w·x + b = 0} at 8 iterations, log-spaced; "
                     "background: the predicted class."))
