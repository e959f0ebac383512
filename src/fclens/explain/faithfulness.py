"""Are the CAM maps faithful to the model, and do they depend on its learned weights at all?

1. Perturbation metrics, all scored on the softmax probability of the class explained (the
   model's prediction), whatever the map's target (a logit or a channel-set sum):
   - deletion (Petsiuk et al. 2018, RISE): the map's most relevant pixels are replaced by a
     blurred copy of the image in `steps` equal parts, from the full image (fraction 0) to the
     all-blurred one (fraction 1); area under the probability curve, lower = more faithful;
   - insertion: the reverse, from the blurred image to the full one; higher = more faithful;
   - Average Drop relu(p(x) - p(map * x)) / p(x) and Increase in Confidence [p(map * x) > p(x)]
     (Chattopadhay et al. 2018), the map in [0, 1] at input size, x the normalized input.
   torchcam 0.5 ships both (`ClassificationMetric`, `DeletionInsertionMetric`), but they do not
   fit here: they score the very output their extractor explained (we explain channel sets and
   score the class probability), and they keep running sums only (the bootstrap below needs one
   value per image). So the same definitions are implemented here, batched over (image, map,
   step); tests/test_faithfulness.py checks them against torchcam's classes on a model where both
   apply (a map of the probability itself).
2. A control: `n_random` random channel sets per class (seeded), each the size of the class's
   influential set (of its terminal+ set for models without a dataset), averaged per image. The
   (insertion - deletion) gap of each target minus the control's, per image, gets a seeded
   bootstrap 95% interval over images (images resampled jointly for all targets).
3. Model-parameter randomization (Adebayo et al. 2018): raw maps of the trained model against
   those of copies whose last block before the pooling (FC kept) or every layer (FC included) is
   replaced by seeded normal noise; Spearman rank correlation per image at the map's own
   resolution, median over images. A map that explains the model must decorrelate (`sanity`).
The maps of every method come from `attributions.method_maps`.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from fclens.core.constants import CAM_METHODS, MAP_METHODS
from fclens.core.errors import FclensError
from fclens.core.tables import Head
from fclens.explain.attributions import method_maps
from fclens.explain.cams import check_spatial, class_targets, upsample_unit
from fclens.explain.sanity import last_block, sanity_rank_corr

if TYPE_CHECKING:
    from fclens.core.params import Faithfulness

RANDOM = "random"
_EPS = 1e-7  # torchcam's ClassificationMetric: drop = relu(p - o) / (p + 1e-7)


# ---------------------------------------------------------------- which images, which targets

@dataclass
class TargetSets:
    names: list[str]  # the targets measured, then `n_random` random sets
    m: np.ndarray  # (N, T + R, D) linear targets on the pooled features
    c: np.ndarray  # (N, T + R)
    random_of: str  # whose size the random sets take: influential, or terminal+ without it


def target_sets(head: Head, nodes: pd.DataFrame, influential: np.ndarray | None,
                cls: np.ndarray, targets: list[str], n_random: int, seed: int) -> TargetSets:
    """Per image, the channel-set targets of its class (as `explain.class_targets`), then
    `n_random` random sets of the class's influential size (terminal+ size without a dataset:
    there `influential` is None and is dropped from `targets`)."""
    allowed = ["logit", "terminal+", "terminal-", "branch+", "branch-", "influential"]
    if bad := [t for t in targets if t not in allowed]:
        raise FclensError(f"params.yaml faithfulness.targets: unknown {bad}; allowed: "
                          f"{', '.join(allowed)} (the random control is always measured)")
    names = [t for t in dict.fromkeys(targets) if t != "influential" or influential is not None]
    if not names:
        raise FclensError(f"params.yaml faithfulness.targets: {targets} leaves no target for a "
                          f"model without a dataset (no influential set); add logit or terminal+")
    if n_random < 1:
        raise FclensError(f"params.yaml faithfulness.n_random: {n_random}; expected >= 1 (the "
                          f"random control)")
    random_of = "influential" if influential is not None else "terminal+"
    per_class = {}
    for k in np.unique(cls):
        all_names, m, c = class_targets(head, int(k), nodes, influential)
        rows = [all_names.index(t) for t in names]
        size = int(np.count_nonzero(m[all_names.index(random_of)]))
        rand = np.zeros((n_random, head.dim), np.float32)
        for r in range(n_random):  # one seeded draw per (seed, r, class): classes independent
            rand[r, np.random.default_rng([seed, r, int(k)]).choice(head.dim, size, False)] = 1
        per_class[k] = (np.concatenate([m[rows], rand]),
                        np.concatenate([c[rows], np.zeros(n_random, np.float32)]))
    m = np.stack([per_class[k][0] for k in cls])  # (N, T + R, D)
    c = np.stack([per_class[k][1] for k in cls])  # (N, T + R)
    return TargetSets(names, m, c, random_of)


# ---------------------------------------------------------------- pixel order

def pixel_ranks(maps: torch.Tensor, seed: int | None) -> torch.Tensor:
    """(N, K, H, W) maps -> (N, K, H*W) rank of each pixel, 0 = most relevant.

    Ties (flat maps, ReLU-zeroed regions) are broken in a seeded random order: raster order would
    delete the top rows first and score a map by where its zeros lie. seed=None: stable argsort,
    torchcam's tie rule (for the cross-check test).
    """
    flat = maps.flatten(2)  # (N, K, P)
    if seed is None:
        order = torch.argsort(flat, dim=-1, descending=True, stable=True)
    else:
        perm = torch.randperm(flat.shape[-1], generator=torch.Generator().manual_seed(seed))
        perm = perm.to(flat.device)
        order = perm[torch.argsort(flat[..., perm], dim=-1, descending=True, stable=True)]
    return torch.argsort(order, dim=-1)


def blurred(x: torch.Tensor, sigma_frac: float) -> torch.Tensor:
    """Gaussian blur (B, 3, H, W) with std sigma_frac x the image side, reflect padding.

    Blurring the normalized tensor equals normalizing the blurred image (the kernel sums to 1
    and normalization is affine per channel)."""
    if not sigma_frac > 0:
        raise FclensError(f"params.yaml faithfulness.blur_sigma: {sigma_frac}; expected > 0")
    out = x
    for axis, side in ((2, x.shape[2]), (3, x.shape[3])):
        sigma = sigma_frac * side
        radius = min(math.ceil(3 * sigma), side - 1)  # reflect padding needs pad < side
        t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
        k = torch.exp(-0.5 * (t / sigma) ** 2)
        k = (k / k.sum()).view(1, 1, -1, 1) if axis == 2 else (k / k.sum()).view(1, 1, 1, -1)
        pad = (0, 0, radius, radius) if axis == 2 else (radius, radius, 0, 0)
        out = F.conv2d(F.pad(out, pad, mode="reflect"), k.expand(x.shape[1], 1, *k.shape[2:]),
                       groups=x.shape[1])
    return out


# ---------------------------------------------------------------- perturbation metrics

def class_prob(model: nn.Module, x: torch.Tensor, cls: torch.Tensor, batch_size: int
               ) -> torch.Tensor:
    """(N,) softmax probability of class cls[i] for image x[i]."""
    with torch.inference_mode():
        return torch.cat([model(x[i:i + batch_size]).float().softmax(1)
                          .gather(1, cls[i:i + batch_size, None])[:, 0]
                          for i in range(0, len(x), batch_size)])


def step_counts(n_pixels: int, steps: int) -> np.ndarray:
    """steps + 1 pixel counts from 0 to n_pixels, equally spaced (rounded)."""
    if not 1 <= steps <= n_pixels:
        raise FclensError(f"params.yaml faithfulness.steps: {steps}; expected 1..{n_pixels} "
                          f"(the image's pixel count)")
    return np.round(np.linspace(0, n_pixels, steps + 1)).astype(np.int64)


@dataclass
class Curves:
    fractions: np.ndarray  # (S,) share of pixels perturbed, 0 .. 1, S = steps + 1
    deletion: np.ndarray  # (N, K, S) class probability, full image -> baseline
    insertion: np.ndarray  # (N, K, S) class probability, baseline -> full image

    def auc(self) -> tuple[np.ndarray, np.ndarray]:
        """(deletion AUC, insertion AUC), each (N, K): trapezoids over the fractions."""
        return (np.trapezoid(self.deletion, self.fractions, axis=-1),
                np.trapezoid(self.insertion, self.fractions, axis=-1))


def perturbation_curves(model: nn.Module, x: torch.Tensor, baseline: torch.Tensor,
                        ranks: torch.Tensor, cls: torch.Tensor, steps: int, batch_size: int
                        ) -> Curves:
    """Deletion and insertion curves of every (image, map): x, baseline (N, 3, H, W); ranks
    (N, K, H*W) from `pixel_ranks`; cls (N,). The two end points are the same for every map
    (the full and the all-baseline image), so they are scored once per image; the inner points
    of all maps and both curves are flattened into jobs, `batch_size` inputs per forward."""
    n, k, p = ranks.shape
    counts = step_counts(p, steps)
    q = len(counts) - 2
    p_full = class_prob(model, x, cls, batch_size)  # (N,)
    p_base = class_prob(model, baseline, cls, batch_size)
    inner = torch.as_tensor(counts[1:-1], device=x.device)
    xf, bf = x.flatten(2), baseline.flatten(2)  # (N, 3, P)
    out = torch.empty(n * k * q * 2, device=x.device)  # (image, map, step, deletion|insertion)
    with torch.inference_mode():
        for start in range(0, out.numel(), batch_size):
            j = torch.arange(start, min(out.numel(), start + batch_size), device=x.device)
            img, kk, qq, ins = j // (k * q * 2), j // (q * 2) % k, j // 2 % q, j % 2
            top = ranks[img, kk] < inner[qq, None]  # (b, P): the pixels perturbed so far
            keep = top == ins.bool()[:, None]  # insertion shows them, deletion hides them
            inp = torch.where(keep[:, None, :], xf[img], bf[img]).view(-1, *x.shape[1:])
            out[j] = model(inp).float().softmax(1).gather(1, cls[img, None])[:, 0]
    out = out.view(n, k, q, 2).cpu().numpy()
    full = np.broadcast_to(p_full.cpu().numpy()[:, None, None], (n, k, 1))
    base = np.broadcast_to(p_base.cpu().numpy()[:, None, None], (n, k, 1))
    return Curves(counts / p, np.concatenate([full, out[..., 0], base], -1),
                  np.concatenate([base, out[..., 1], full], -1))


def drop_and_increase(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, cls: torch.Tensor,
                      batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per (image, map), (N, K) each: Average Drop's term relu(p - o) / p and Increase in
    Confidence's [o > p], o the probability of map * x (maps (N, K, H, W) in [0, 1]); x is the
    normalized input, as in torchcam's ClassificationMetric (0 = the dataset mean colour)."""
    n, k = maps.shape[:2]
    p = class_prob(model, x, cls, batch_size)  # (N,)
    o = torch.empty(n * k, device=x.device)
    with torch.inference_mode():
        for start in range(0, n * k, batch_size):
            j = torch.arange(start, min(n * k, start + batch_size), device=x.device)
            img, kk = j // k, j % k
            o[j] = model(maps[img, kk][:, None] * x[img]).float().softmax(1).gather(
                1, cls[img, None])[:, 0]
    o = o.view(n, k)
    drop = torch.relu(p[:, None] - o) / (p[:, None] + _EPS)
    return drop.cpu().numpy(), (o > p[:, None]).float().cpu().numpy()


def bootstrap_ci(values: np.ndarray, n_boot: int, seed: int, level: float = 0.95
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of the mean of `values` (N, T) over images: rows are resampled with
    replacement, jointly for all columns (paired), seeded. Returns (lo, hi), each (T,)."""
    values = np.asarray(values, np.float64).reshape(len(values), -1)
    if len(values) == 0 or n_boot < 1:
        raise FclensError(f"bootstrap: {len(values)} images, n_boot={n_boot}; expected >= 1 each")
    rng = np.random.default_rng(seed)
    means = np.concatenate([values[rng.integers(0, len(values), (min(100, n_boot - b),
                                                                 len(values)))].mean(1)
                            for b in range(0, n_boot, 100)])  # (n_boot, T), 100 at a time
    a = (1 - level) / 2
    return np.quantile(means, a, axis=0), np.quantile(means, 1 - a, axis=0)


# ---------------------------------------------------------------- all of it

@dataclass
class Result:
    metrics: dict  # faithfulness.json
    timing: dict  # seconds: metrics/timing, never in faithfulness.json
    fractions: np.ndarray  # (S,)
    mean_curves: dict[str, tuple[np.ndarray, np.ndarray]]  # target -> (deletion, insertion) (S,)


def _measure(model: nn.Module, x: torch.Tensor, cls: np.ndarray, sets: TargetSets,
             method: str, s: Faithfulness, seed: int, base: torch.Tensor
             ) -> tuple[dict, dict, Curves, dict]:
    """One map method through the whole protocol: (metrics block, mean curves, curves,
    timing)."""
    t0 = time.perf_counter()
    raw = method_maps(model, x, sets.m, sets.c, method, s, seed, base)  # (N, K, h, w)
    maps = upsample_unit(raw, tuple(x.shape[-2:])).to(x.device)  # (N, K, H, W) in [0, 1]
    t1 = time.perf_counter()
    cls_t = torch.as_tensor(cls, device=x.device, dtype=torch.long)
    # The perturbed images only need forwards: a channels_last copy runs them 30-45% faster on a
    # CPU (metrics/bench/extract.json), and the caller's model is left as it was.
    scorer = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
    curves = perturbation_curves(scorer, x, base, pixel_ranks(maps, seed), cls_t, s.steps,
                                 s.batch_size)
    drop, inc = drop_and_increase(scorer, x, maps, cls_t, s.batch_size)
    del scorer
    t2 = time.perf_counter()
    sanity = sanity_rank_corr(model, x, cls, sets, raw, s, seed, method, base)
    t3 = time.perf_counter()
    metrics, mean_curves = summarize(sets, curves, drop, inc, s, seed, method)
    metrics["sanity_rank_corr"] = sanity
    timing = {"seconds": t3 - t0, "seconds_maps": t1 - t0, "seconds_perturbation": t2 - t1,
              "seconds_sanity": t3 - t2,
              "forwards_perturbation": int(len(x) * sets.m.shape[1] * (s.steps + 1))}
    return metrics, mean_curves, curves, timing


def evaluate(model: nn.Module, head: Head, nodes: pd.DataFrame, influential: np.ndarray | None,
             x: torch.Tensor, cls: np.ndarray, s: Faithfulness, seed: int) -> Result:
    """All three measures for images x (N, 3, H, W) (normalized, on the model's device), each
    explained for its class cls (N,) (the prediction), for `s.method` (the top level) and every
    entry of `s.methods` (by_method; the same images, targets, steps and control)."""
    if len(x) == 0:
        raise FclensError("faithfulness: no images picked; expected at least one")
    if s.method not in CAM_METHODS:
        raise FclensError(f"params.yaml faithfulness.method: {s.method!r}; allowed "
                          f"{', '.join(CAM_METHODS)}")
    if bad := [m for m in s.methods if m not in MAP_METHODS]:
        raise FclensError(f"params.yaml faithfulness.methods: {bad}; allowed "
                          f"{', '.join(MAP_METHODS)}")
    cls = np.asarray(cls)
    sets = target_sets(head, nodes, influential, cls, s.targets, s.n_random, seed)
    check_spatial(model, x)  # tokens (ViTs) have no map to perturb: fail before any work
    base = blurred(x, s.blur_sigma)
    by_method, timing = {}, {"device": str(x.device)}
    for method in dict.fromkeys([s.method, *s.methods]):
        block, curves_mean, curves, t = _measure(model, x, cls, sets, method, s, seed, base)
        by_method[method] = block
        timing[method] = t
        if method == s.method:
            top, mean_curves, fractions = block, curves_mean, curves.fractions
    metrics = {**top, "sanity_randomized": {"last_block": last_block(model),
                                            "all": "every parameter, FC included"},
               "by_method": by_method,
               "most_faithful_method": {t: max(by_method, key=lambda m: by_method[m]["targets"]
                                               [t]["gap"]) for t in [*sets.names, RANDOM]}}
    timing |= {k: sum(v[k] for v in timing.values() if isinstance(v, dict))
               for k in ("seconds", "seconds_maps", "seconds_perturbation", "seconds_sanity",
                         "forwards_perturbation")}
    return Result(metrics, timing, fractions, mean_curves)


def summarize(sets: TargetSets, curves: Curves, drop: np.ndarray, inc: np.ndarray,
              s: Faithfulness, seed: int, method: str) -> tuple[dict, dict]:
    """faithfulness.json (less the sanity part) and the mean curves per target."""
    t = len(sets.names)

    def per_target(v: np.ndarray) -> np.ndarray:  # (N, T + R) -> (N, T + 1): random averaged
        return np.concatenate([v[:, :t], v[:, t:].mean(1, keepdims=True)], 1)

    dele, ins = (per_target(a) for a in curves.auc())
    drop, inc = per_target(drop), per_target(inc)
    gap = ins - dele  # (N, T + 1)
    diff = gap[:, :t] - gap[:, t:]  # (N, T): each target against the random control, paired
    lo, hi = bootstrap_ci(diff, s.n_boot, seed)
    names = [*sets.names, RANDOM]
    targets = {}
    for j, name in enumerate(names):
        targets[name] = {"deletion_auc": dele[:, j].mean(), "insertion_auc": ins[:, j].mean(),
                         "gap": gap[:, j].mean(), "average_drop": drop[:, j].mean(),
                         "increase_confidence": inc[:, j].mean()}
        if name != RANDOM:
            targets[name] |= {"gap_vs_random": diff[:, j].mean(),
                              "gap_vs_random_ci95": [lo[j], hi[j]]}
    metrics = {
        "method": method, "n_images": len(gap), "targets": targets,
        "most_faithful": sets.names[int(np.argmax(gap[:, :t].mean(0)))],
        "random_worse_than_all": bool((lo > 0).all()),
        "score": "softmax probability of the predicted class",
        "baseline": "gaussian blur", "blur_sigma": s.blur_sigma, "steps": s.steps,
        "n_random": s.n_random, "random_size_of": sets.random_of, "n_boot": s.n_boot}
    r = slice(t, None)
    mean_curves = {name: (curves.deletion[:, j].mean(0), curves.insertion[:, j].mean(0))
                   for j, name in enumerate(sets.names)}
    mean_curves[RANDOM] = (curves.deletion[:, r].mean((0, 1)), curves.insertion[:, r].mean((0, 1)))
    return metrics, mean_curves
