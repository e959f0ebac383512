"""One model's maximum-response study: every method's batch (explain.visualize) and its numbers:
self / transfer rates, plausibility in the pooled-feature space and the path check."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from fclens.explain import visualize as vis


@dataclass
class Natural:
    """Natural images of the visualized classes: (N, 3, H, W) float in [0, 1] and their class."""

    images: np.ndarray
    cls: np.ndarray
    source: str


@dataclass
class Study:
    metrics: dict
    images: dict[str, np.ndarray]  # method -> (B, 3, H, W) in [0, 1]
    transparency: dict[str, np.ndarray | None]  # method -> (B, H, W) or None
    probs: dict[str, np.ndarray]  # method -> (B,) the source model's probability of the class
    timing: dict


def _mean(x: np.ndarray) -> float | None:
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else None


def study(model: nn.Module, targets: vis.Targets, methods: list[str],
          judges: dict[str, nn.Module], natural: Natural, steps: int, lr: float, n_crops: int,
          side: int, magnitude: np.ndarray, seed: int) -> Study:
    """All methods on one model. Judges: other models with the same classes (transfer)."""
    vis.check_names(methods, vis.METHODS, "visualize.methods")
    layers = vis.path_layers(model)
    nat = vis.layer_activations(model, natural.images, layers)  # {layer: (N, K)}
    cls, obj = targets.cls, targets.obj
    out, images, transp, probs, seconds = {}, {}, {}, {}, {}
    reference = vis.path_check_natural(nat, natural.cls)  # natural images, leave-one-out
    # each judge's accuracy on the natural images: the rate a real image of the class gets
    natural_rate = {j: vis.rate(vis.judge(jm, natural.images), natural.cls)
                    for j, jm in judges.items()}
    for method in methods:
        r = vis.visualize(model, targets, method, steps, lr, n_crops, side,
                          magnitude if method == "maco" else None, seed)
        p = vis.judge(model, r.images)  # (B, C)
        p0 = vis.judge(model, r.start)  # the un-optimized start: what the rate is without work
        jp = {j: vis.judge(jm, r.images) for j, jm in judges.items()}
        acts = vis.layer_activations(model, r.images, layers)
        same, other = vis.plausibility(acts["pooled"], cls, nat["pooled"], natural.cls)
        per_obj = {}
        for o, name in enumerate(targets.objectives):
            rows = obj == o
            per_obj[name] = {
                "self_rate": vis.rate(p[rows], cls[rows]),
                "self_rate_start": vis.rate(p0[rows], cls[rows]),
                "transfer_rate": {j: vis.rate(q[rows], cls[rows]) for j, q in jp.items()},
                "transfer_rate_natural": natural_rate,
                "plausibility_same": _mean(same[rows]),
                "plausibility_other": _mean(other[rows]),
                "mean_prob": float(p[rows, cls[rows]].mean()),
                "mean_target": float(r.target[rows].mean()),
            }
        # the path check asks whether a *class* image is processed like the class's images:
        # the logit rows (a terminal channel's image is not meant to look like the class)
        pc = obj == targets.objectives.index("logit") if "logit" in targets.objectives else \
            np.ones(len(cls), bool)
        out[method] = {"objectives": per_obj,
                       "path_check": {**vis.path_check({k: a[pc] for k, a in acts.items()},
                                                       nat, cls[pc], natural.cls),
                                      "objective": "logit" if "logit" in targets.objectives
                                      else "all",
                                      "natural_same_class": reference["same_class"],
                                      "natural_other_class": reference["other_class"]}}
        images[method], transp[method] = r.images, r.transparency
        probs[method], seconds[method] = p[np.arange(len(cls)), cls], r.seconds
    metrics = {"n_classes_visualized": len(targets.classes), "objectives": targets.objectives,
               "batch": [len(cls), 3, side, side], "steps": steps, "n_crops": n_crops, "lr": lr,
               "judges": list(judges), "natural": {"source": natural.source,
                                                  "n_images": len(natural.cls)},
               "terminal_channel": targets.channel[targets.channel >= 0].tolist(),
               "methods": out}
    return Study(metrics, images, transp, probs,
                 {"optimize_seconds": seconds,
                  "seconds_per_image_step": {m: s / (len(cls) * steps) for m, s in
                                             seconds.items()}})
