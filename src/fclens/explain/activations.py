"""The lecture's second way of looking at a network: its internal activations on one sample.

`stage_maps` runs the explained images once and returns the output of every stage that the
model's family registers (`STAGES`), as (N, C, h, w) arrays. The last stage is always the map
returned by `forward_features`, the one global-pooled into the penultimate features, so its
channel i *is* feature i of the FC layer (`pooling_max_abs_err` checks this against
`forward_head(pre_logits=True)` on the real model). Earlier stages are caught by forward hooks
that are removed when the pass ends, even if it raises.

On that last stage the predicted class's channel sets are marked: `terminal+` (the deepest node
of its all-'+' split chain, fclens.analysis.trees.chain_node) and `influential` (its Algorithm-1
indices; dataset models only). Each set's share of the image's numbers is set beside the mean of
`N_RANDOM` random channel sets of the same size (seeded by `seed` and the size), which a set
that carries nothing special would match.

Metrics (`summarize`), per set S in {terminal+, influential} and image i, with pooled features
f (D,) and c the predicted class:
- `size`: |S|.
- `activation_share`: sum(f[S]) / sum(f), the share of the pooled last-stage activation carried
  by S (the features are post-ReLU, so non-negative, for the models here).
- `logit_share`: of the predicted logit's positive contributions z = f * W[c] (z > 0), the
  share carried by S: sum(z[S] * (z[S] > 0)) / sum(z * (z > 0)).
- `*_random`: what a random set of size |S| carries in expectation, |S| / D exactly (a share is
  linear in the set's indicator); `*_p`: the share of `N_RANDOM` seeded random sets that carry
  at least as much as S, (1 + #{random >= S}) / (1 + N_RANDOM).
`sets.<S>` holds their means over images (`*_above_random`: the share of images where S beats
the random mean). Per stage (`stages.<name>`): `shape` [C, h, w], `zero_fraction` (activations
exactly 0, all images) and `dead_channel_fraction` (channels 0 everywhere on every image);
`images.<name>.zero_fraction` per image and stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from fclens.analysis.trees import chain_node
from fclens.core.errors import FclensError

N_RANDOM = 200  # random channel sets per image and set: the control's resolution is 1/201
WHERE = "params.yaml activations.models"


# ---------------------------------------------------------------- which stages, per family

def _cifar_resnet(model: nn.Module) -> tuple[list[str], str]:
    return ["layer1", "layer2"], "layer3"  # (16, 32, 32), (32, 16, 16); layer3 = features


def _efficientnet(model: nn.Module) -> tuple[list[str], str]:
    n = len(model.blocks)  # Lite0 at 224: blocks.5 (192, 7, 7), blocks.6 (320, 7, 7)
    return [f"blocks.{i}" for i in range(max(n - 2, 0), n)], "conv_head"  # (1280, 7, 7)


def _timm_feature_info(model: nn.Module) -> tuple[list[str], str]:
    """Any other timm model: the last two stages its feature_info names, then the features."""
    info = getattr(model, "feature_info", None) or []
    names = [f["module"] for f in info if isinstance(f, dict) and f.get("module")]
    return names[-2:], "features"


STAGES = {"CifarResNet": _cifar_resnet, "EfficientNet": _efficientnet}  # class name -> stages


def stage_names(model: nn.Module) -> tuple[list[str], str]:
    """(hooked module names, name of the last stage = forward_features output) of `model`."""
    return STAGES.get(type(model).__name__, _timm_feature_info)(model)


class _Hooks:
    """Forward hooks that keep each named module's output; removed on exit, always."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        mods = dict(model.named_modules())
        if missing := [n for n in names if n not in mods]:
            raise FclensError(f"{type(model).__name__}: no module {missing}; the activation "
                              f"stages of this family expect {names}")
        self.out: dict[str, torch.Tensor] = {}
        self._mods = [(n, mods[n]) for n in names]
        self._handles: list = []

    def __enter__(self) -> dict[str, torch.Tensor]:
        for name, mod in self._mods:
            self._handles.append(mod.register_forward_hook(self._keep(name)))
        return self.out

    def _keep(self, name: str):
        def hook(_mod, _inp, out):
            self.out[name] = out.detach()
        return hook

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


@dataclass
class Stages:
    names: list[str]  # the last is forward_features' output
    maps: list[np.ndarray]  # per stage (N, C, h, w) float32
    pooled: np.ndarray  # (N, D) forward_head(pre_logits=True) of the last map
    pooling_max_abs_err: float  # max |mean over (h, w) of the last map - pooled|

    @property
    def last(self) -> np.ndarray:
        return self.maps[-1]


def stage_maps(model: nn.Module, x: torch.Tensor, model_name: str) -> Stages:
    """Every registered stage's output on x (N, 3, H, W), one forward pass, hooks removed.
    FclensError naming `params.yaml activations.models` if a stage is not an NCHW map."""
    hooked, last = stage_names(model)
    with torch.inference_mode(), _Hooks(model, hooked) as out:
        fmap = model.forward_features(x)  # (N, D, h, w)
    fmt = str(getattr(model, "output_fmt", "NCHW"))
    tensors = [out.get(n) for n in hooked] + [fmap]
    bad = [(n, tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__)
           for n, t in zip([*hooked, last], tensors)
           if not isinstance(t, torch.Tensor) or t.ndim != 4]
    if fmt not in ("NCHW", "Format.NCHW"):
        bad.append((last, fmt))
    if bad:
        raise FclensError(f"{WHERE}: {model_name} ({type(model).__name__}) gives {bad}; "
                          f"activation grids need NCHW spatial maps (CNNs), not tokens or "
                          f"vectors; allowed: models whose forward_features is (N, C, h, w)")
    with torch.inference_mode():
        pooled = model.forward_head(fmap, pre_logits=True)  # (N, D)
    maps = [t.float().cpu().numpy() for t in tensors]
    pooled = pooled.float().cpu().numpy()
    err = float(np.abs(maps[-1].mean((2, 3)) - pooled).max()) if pooled.shape == \
        maps[-1].shape[:2] else float("inf")
    if not err < 1e-3 * max(1.0, float(np.abs(pooled).max())):
        raise FclensError(f"{WHERE}: {model_name}: forward_head(pre_logits=True) is not the "
                          f"mean of forward_features over (h, w) (max diff {err:.3g}, shapes "
                          f"{pooled.shape} vs {maps[-1].shape}); channel i would not be "
                          f"feature i; expected a global-average-pooled head")
    return Stages([*hooked, last], maps, pooled, err)


# ---------------------------------------------------------------- marks and channel order

def class_marks(nodes: pd.DataFrame, cls: int, influential: np.ndarray | None
                ) -> dict[str, np.ndarray]:
    """The channel sets marked on the last stage for class `cls`: terminal+ and, with a
    dataset, its Algorithm-1 indices (`influential` (C, k2))."""
    marks = {"terminal+": np.asarray(chain_node(nodes, cls, "+"), np.int64)}
    if influential is not None:
        marks["influential"] = np.asarray(influential[cls], np.int64)
    return marks


def pick_channels(maps: np.ndarray, k: int, marked: list[np.ndarray] = ()) -> np.ndarray:
    """Channel order of one image's stage grid, maps (C, h, w): the marked channels first (by
    mean activation, descending), then the most active by mean; at most k. (<= k,) int64"""
    mean = maps.mean((1, 2))  # (C,)
    first = np.unique(np.concatenate([np.asarray(m, np.int64) for m in marked] or
                                     [np.zeros(0, np.int64)]))
    first = first[np.argsort(-mean[first], kind="stable")]
    order = np.argsort(-mean, kind="stable")
    return np.concatenate([first, order[~np.isin(order, first)]])[:k]


# ---------------------------------------------------------------- numbers and their control

def random_sets(d: int, size: int, seed: int, n: int = N_RANDOM) -> np.ndarray:
    """n random channel sets of `size` distinct indices in 0..d-1, seeded by (seed, size) so a
    set's control does not depend on which other sets were drawn. (n, size) int64"""
    rng = np.random.default_rng([seed, size])
    return np.argsort(rng.random((n, d)), axis=1)[:, :size]


def _shares(values: np.ndarray, sets: np.ndarray) -> np.ndarray:
    """values (D,) non-negative; sets (R, k) -> (R,) share of sum(values) each set carries."""
    total = values.sum()
    return values[sets].sum(1) / total if total > 0 else np.full(len(sets), np.nan)


def set_numbers(f: np.ndarray, w: np.ndarray, idx: np.ndarray, seed: int) -> dict:
    """One image, one set: f (D,) pooled features, w (D,) the predicted class's weights,
    idx (k,) the set. Activation and positive-logit shares vs random sets of size k."""
    idx = np.asarray(idx, np.int64)
    rand = random_sets(len(f), len(idx), seed)  # (R, k)
    out = {"size": len(idx)}
    for key, v in (("activation_share", f), ("logit_share", np.maximum(f * w, 0))):
        s = float(_shares(v, idx[None])[0])
        r = _shares(v, rand)  # (R,)
        out[key] = s
        out[f"{key}_random"] = len(idx) / len(f)  # exact: a random set of k carries k / D
        # of the total in expectation; the draws give the rank of the set among random ones
        out[f"{key}_p"] = float((1 + (r >= s).sum()) / (1 + len(r)))
    return out


def summarize(st: Stages, w: np.ndarray, cls: np.ndarray, marks: list[dict[str, np.ndarray]],
              images: list[str], seed: int) -> dict:
    """Metrics of the module docstring. w (C, D) FC weights; cls (N,) predicted classes;
    marks[i] the marked sets of image i; images (N,) names."""
    per_image = {}
    for i, name in enumerate(images):
        row = {"class": int(cls[i]), "zero_fraction": {
            s: float((m[i] == 0).mean()) for s, m in zip(st.names, st.maps)}}
        for set_name, idx in marks[i].items():
            row[set_name] = set_numbers(st.pooled[i], w[cls[i]], idx, seed)
        per_image[name] = row
    sets = {}
    for set_name in dict.fromkeys(k for m in marks for k in m):
        rows = [r[set_name] for r in per_image.values() if set_name in r]
        sets[set_name] = {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}
        for k in ("activation_share", "logit_share"):
            sets[set_name][f"{k}_above_random"] = float(np.mean(
                [r[k] > r[f"{k}_random"] for r in rows]))
        sets[set_name]["n_images"] = len(rows)
    stages = {s: {"shape": list(m.shape[1:]), "zero_fraction": float((m == 0).mean()),
                  "dead_channel_fraction": float((m == 0).all((0, 2, 3)).mean())}
              for s, m in zip(st.names, st.maps)}
    return {"n_images": len(images), "n_random": N_RANDOM, "last_stage": st.names[-1],
            "pooling_max_abs_err": st.pooling_max_abs_err, "stages": stages, "sets": sets,
            "images": per_image}


# ---------------------------------------------------------------- the whole stage's science

@dataclass
class Result:
    stages: Stages
    cls: np.ndarray  # (N,) the class whose sets are marked: the prediction
    marks: list[dict[str, np.ndarray]]  # per image: set name -> channel indices (last stage)
    channels: list[list[np.ndarray]]  # per image, per stage: the channels shown (<= k,)
    numbers: list[dict[str, dict]]  # per image: set name -> its `set_numbers`
    metrics: dict


def single_sample_activations(model: nn.Module, x: torch.Tensor, w: np.ndarray,
                              cls: np.ndarray, nodes: pd.DataFrame,
                              influential: np.ndarray | None, max_channels: int,
                              images: list[str], seed: int, model_name: str) -> Result:
    """Every stage's maps on x (N, 3, H, W), the channels each grid shows (at most
    max_channels; on the last stage the predicted class's marked sets first), and the metrics
    of the module docstring. w (C, D) FC weights; cls (N,) predicted classes; nodes the
    tree_nodes table; influential (C, k2) or None; images (N,) names for the metrics."""
    st = stage_maps(model, x, model_name)
    if st.pooled.shape[1] != w.shape[1]:
        raise FclensError(f"{WHERE}: {model_name}: {st.pooled.shape[1]} pooled features but "
                          f"the FC weights have {w.shape[1]}; expected the same model's head")
    marks = [class_marks(nodes, int(c), influential) for c in cls]
    last = len(st.maps) - 1
    channels = [[pick_channels(m[i], max_channels, list(marks[i].values()) if s == last else [])
                 for s, m in enumerate(st.maps)] for i in range(len(cls))]
    metrics = summarize(st, w, cls, marks, images, seed)
    numbers = [{k: metrics["images"][n][k] for k in m} for n, m in zip(images, marks)]
    return Result(st, np.asarray(cls), marks, channels, numbers, metrics)
