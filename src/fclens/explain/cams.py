"""Grad-CAM++ / Smooth Grad-CAM++ maps of linear targets on the pooled features, via torchcam.

Every target we explain is a linear functional of the pooled penultimate features f (D,):
a class logit is f @ W[c] + b[c]; "the sum of a set S of channels" is f @ 1_S. `TargetModel`
turns a model into x -> (B, T) such targets, so torchcam (which explains output columns) can
explain channel sums as well as logits. Its `features` submodule is exactly `forward_features`,
the map that feeds the global pooling: that is the layer torchcam hooks. torchcam registers its
hooks on the wrapper, never on the user's model, and removes them when its context exits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torchcam.methods import GradCAM, GradCAMpp, SmoothGradCAMpp

from fclens.analysis.trees import branch_node, chain_node
from fclens.core.constants import CAM_METHODS
from fclens.core.errors import FclensError
from fclens.core.tables import Head
from fclens.explain.select import Inputs
from fclens.models.heads import linear_head


class GradCAMppFixed(GradCAMpp):
    """Grad-CAM++ with the paper's pixel weights (Chattopadhay et al. 2018, eq. 19).

    torchcam 0.5.0's GradCAMpp divides a boolean-indexed *copy* (`alpha[idx][mask].div_(...)`),
    so its alpha stays grad**2 and its channel weights are sum(grad**2 * relu(grad)), not
    Grad-CAM++ (its SmoothGradCAMpp divides correctly). Here the division is applied.
    """

    def _get_weights(self, class_idx, scores, eps: float = 1e-8, **kwargs) -> list[torch.Tensor]:
        self._backprop(scores, class_idx, **kwargs)
        out = []
        for act, grad in zip(self.hook_a, self.hook_g, strict=True):  # (B, K, h, w) each
            g2 = grad.pow(2)
            denom = 2 * g2 + (g2 * grad * act).flatten(2).sum(-1)[..., None, None]
            alpha = torch.where(g2 > 0, g2 / (denom + eps), torch.zeros_like(g2))
            out.append((alpha * torch.relu(grad)).flatten(2).sum(-1))  # (B, K)
        return out


METHODS = dict(zip(CAM_METHODS, (GradCAM, GradCAMppFixed, SmoothGradCAMpp), strict=True))


class _Features(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)  # (B, K, h, w)


class TargetModel(nn.Module):
    """x (B, 3, H, W) -> (B, T) targets pooled(forward_features(x)) @ m.T + c."""

    def __init__(self, model: nn.Module, m: torch.Tensor, c: torch.Tensor) -> None:
        super().__init__()
        self.features = _Features(model)
        self.register_buffer("m", m.float())  # (T, D)
        self.register_buffer("c", c.float())  # (T,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.features.model.forward_head(self.features(x), pre_logits=True)  # (B, D)
        return pooled @ self.m.T + self.c  # (B, T)


@dataclass
class CamResult:
    maps: np.ndarray  # (B, K, H, W) float32: in [0, 1] at input size, or raw at layer size
    seconds: float

    @property
    def n_maps(self) -> int:
        return int(np.prod(self.maps.shape[:2]))


def compute_cams(model: nn.Module, x: torch.Tensor, m: np.ndarray, c: np.ndarray,
                 method: str = "gradcampp", n_samples: int = 8, sigma: float = 0.3,
                 seed: int = 0, raw: bool = False) -> CamResult:
    """Maps of K targets per image: target k of image i is pooled(x_i) @ m[i, k] + c[i, k].

    x: (B, 3, H, W) normalized input on the model's device; m: (B, K, D); c: (B, K).
    raw=False: bilinearly upsampled to (H, W), then min-max normalized per map to [0, 1].
    raw=True: torchcam's unnormalized map at the hooked layer's resolution (for exact checks).
    Each target gets its own clean forward and its own seed, so a map does not depend on which
    other targets were asked for (Smooth Grad-CAM++ otherwise carries noisy activations over).
    """
    if method not in METHODS:
        raise FclensError(f"params.yaml explain.methods: {method!r}; allowed {list(METHODS)}")
    b, k, d = m.shape
    if x.shape[0] != b or c.shape != (b, k):
        raise FclensError(f"targets for {m.shape[:2]} (image, target) pairs, "
                          f"{x.shape[0]} images and constants of shape {c.shape}")
    check_spatial(model, x)
    dev = x.device
    tm = TargetModel(model, torch.from_numpy(m.reshape(b * k, d)),
                     torch.from_numpy(c.reshape(b * k))).to(dev).eval()
    kwargs = {"num_samples": n_samples, "std": sigma} if method == "smooth_gradcampp" else {}
    out = []
    t0 = time.perf_counter()
    with torch.enable_grad(), METHODS[method](tm, target_layer="features", **kwargs) as cam:
        for j in range(k):
            torch.manual_seed(seed + j)
            scores = tm(x.detach().requires_grad_(True))  # (B, B*K)
            maps = cam(class_idx=[i * k + j for i in range(b)], scores=scores,
                       normalized=not raw)[0]  # (B, h, w)
            if not raw:
                maps = _unit_range(F.interpolate(maps[:, None], size=x.shape[-2:],
                                                 mode="bilinear", align_corners=False)[:, 0])
            out.append(maps.detach().float().cpu())
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    return CamResult(torch.stack(out, 1).numpy(), seconds)


def check_spatial(model: nn.Module, x: torch.Tensor) -> None:
    """FclensError unless forward_features gives an NCHW map (CAMs need one; tokens do not)."""
    with torch.inference_mode():
        fmap = model.forward_features(x[:1])
    fmt = getattr(model, "output_fmt", "NCHW")
    if fmap.ndim != 4 or str(fmt) not in ("NCHW", "Format.NCHW"):
        raise FclensError(f"{type(model).__name__}: forward_features gives {tuple(fmap.shape)} "
                          f"({fmt}); CAMs need an NCHW spatial map (CNNs), not tokens")


def _unit_range(maps: torch.Tensor) -> torch.Tensor:
    """Min-max per map (B, H, W) after upsampling, so every non-flat map spans exactly [0, 1]."""
    lo = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - lo
    return torch.where(span > 0, (maps - lo) / span.clamp_min(1e-12), torch.zeros_like(maps))


def class_activation_map(model: nn.Module, x: torch.Tensor, cls: int) -> np.ndarray:
    """Zhou et al.'s CAM: sum_k W[cls, k] A_k at the map feeding the pooling. (B, h, w)"""
    with torch.inference_mode():
        fmap = model.forward_features(x)  # (B, K, h, w)
        w = linear_head(model).weight[cls]  # (K,)
        return torch.einsum("bkhw,k->bhw", fmap.float(), w.float()).cpu().numpy()


# ---------------------------------------------------------------- which targets, which images

def class_targets(head: Head, cls: int, nodes: pd.DataFrame, influential: np.ndarray | None
                  ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(names, m (K, D), c (K,)) for one class: its logit and channel-set sums.

    `nodes` is the tree_nodes table; `influential` the (C, k2) Algorithm-1 indices or None
    (models without a dataset). Terminal +/-: the deepest node of the all-'+' / all-'-' chain
    (the blog's terminal neurons); branch +/-: the root's two children.
    """
    sets = {"terminal+": chain_node(nodes, cls, "+"), "terminal-": chain_node(nodes, cls, "-"),
            "branch+": branch_node(nodes, cls, "+"), "branch-": branch_node(nodes, cls, "-")}
    if influential is not None:
        sets["influential"] = influential[cls]
    names = ["logit", *sets]
    m = np.zeros((len(names), head.dim), np.float32)
    c = np.zeros(len(names), np.float32)
    m[0], c[0] = head.w[cls], head.b[cls]
    for row, idx in enumerate(sets.values(), start=1):
        m[row, np.asarray(idx, dtype=np.int64)] = 1.0
    return names, m, c


@dataclass
class Explained:
    targets: list[str]
    maps: dict[str, np.ndarray]  # method -> (N, K, H, W) in [0, 1]
    metrics: dict
    timing: dict


def explain(model: nn.Module, head: Head, nodes: pd.DataFrame, inp: Inputs, methods: list[str],
            n_samples: int, sigma: float, seed: int) -> Explained:
    """Every method's maps of every target, plus an exact check on the real model:
    Grad-CAM of a logit == ReLU(CAM) / (h*w) for a GAP + linear head."""
    per_image = [class_targets(head, int(c), nodes, inp.influential) for c in inp.cls]
    targets = per_image[0][0]
    m = np.stack([t[1] for t in per_image])  # (N, K, D)
    c = np.stack([t[2] for t in per_image])  # (N, K)
    maps, seconds = {}, {}
    for method in methods:
        r = compute_cams(model, inp.x, m, c, method, n_samples, sigma, seed)
        maps[method], seconds[method] = r.maps, r.seconds / r.n_maps
    g = compute_cams(model, inp.x, m[:, :1], c[:, :1], "gradcam", raw=True).maps[:, 0]  # (N,h,w)
    cam = np.stack([class_activation_map(model, inp.x[i:i + 1], int(k))[0]
                    for i, k in enumerate(inp.cls)])
    hw = g.shape[-1] * g.shape[-2]
    err = float(np.abs(g * hw - np.maximum(cam, 0)).max() / max(np.abs(cam).max(), 1e-12))
    n_maps = len(inp.images) * len(targets) * len(methods)
    metrics = {"n_maps": n_maps, "device": str(inp.x.device), "n_images": len(inp.images),
               "targets": targets, "methods": list(methods), "gradcam_vs_cam_max_rel_err": err}
    timing = {"seconds_per_map": float(np.mean(list(seconds.values()))),
              "seconds_per_map_by_method": seconds}
    return Explained(targets, maps, metrics, timing)


# ---------------------------------------------------------------- helpers for faithfulness.py

def upsample_unit(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Raw maps (B, K, h, w) -> (B, K, H, W) as `compute_cams(raw=False)` gives them: bilinear,
    then min-max per map. torchcam's own normalisation is a positive affine map per map, which
    bilinear interpolation and min-max both commute with, so skipping it changes nothing."""
    b, k = raw.shape[:2]
    up = F.interpolate(raw.reshape(b * k, 1, *raw.shape[-2:]).float(), size=size,
                       mode="bilinear", align_corners=False)[:, 0]
    return _unit_range(up).reshape(b, k, *size)
