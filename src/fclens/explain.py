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
import torch
import torch.nn.functional as F
from torch import nn
from torchcam.methods import GradCAM, GradCAMpp, SmoothGradCAMpp

from .io import FclensError
from .params import CAM_METHODS

METHODS = dict(zip(CAM_METHODS, (GradCAM, GradCAMpp, SmoothGradCAMpp), strict=True))
METHOD_TITLES = {"gradcam": "Grad-CAM", "gradcampp": "Grad-CAM++",
                 "smooth_gradcampp": "Smooth Grad-CAM++"}


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
    _check_spatial(model, x[:1])
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


def _check_spatial(model: nn.Module, x: torch.Tensor) -> None:
    with torch.inference_mode():
        fmap = model.forward_features(x)
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
        w = model.get_classifier().weight[cls]  # (K,)
        return torch.einsum("bkhw,k->bhw", fmap.float(), w.float()).cpu().numpy()


# ---------------------------------------------------------------- which targets, which images

def _deepest(nodes_c, sign: str) -> np.ndarray:
    """Indices of the deepest node on the all-`sign` path; the root if the tree never split."""
    on_path = nodes_c[nodes_c["path"].str.fullmatch(rf"\{sign}+")]
    if on_path.empty:
        return nodes_c[nodes_c["path"] == ""]["indices"].iloc[0]
    return on_path.sort_values("depth")["indices"].iloc[-1]


def _branch(nodes_c, sign: str) -> np.ndarray:
    node = nodes_c[nodes_c["path"] == sign]
    return (node if len(node) else nodes_c[nodes_c["path"] == ""])["indices"].iloc[0]


def class_targets(w: np.ndarray, b: np.ndarray, cls: int, nodes, influential: np.ndarray | None
                  ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(names, m (K, D), c (K,)) for one class: its logit and channel-set sums.

    `nodes` is the tree_nodes table (pandas); `influential` the (C, k2) Algorithm-1 indices or
    None (models without a dataset). Terminal +/-: the deepest node of the all-'+' / all-'-'
    chain (the blog's terminal neurons); branch +/-: the root's two children.
    """
    nodes_c = nodes[nodes["class_index"] == cls]
    if nodes_c.empty:
        raise FclensError(f"tree_nodes: no nodes for class {cls}")
    sets = {"terminal+": _deepest(nodes_c, "+"), "terminal-": _deepest(nodes_c, "-"),
            "branch+": _branch(nodes_c, "+"), "branch-": _branch(nodes_c, "-")}
    if influential is not None:
        sets["influential"] = influential[cls]
    names = ["logit", *sets]
    m = np.zeros((len(names), w.shape[1]), np.float32)
    c = np.zeros(len(names), np.float32)
    m[0], c[0] = w[cls], b[cls]
    for row, idx in enumerate(sets.values(), start=1):
        m[row, np.asarray(idx, dtype=np.int64)] = 1.0
    return names, m, c


def pick_images(labels: np.ndarray, preds: np.ndarray, classes: list[int], n_correct: int,
                n_wrong: int) -> np.ndarray:
    """Per class, the first n_correct correctly and n_wrong wrongly classified test images."""
    picked = []
    for c in classes:
        mine = labels == c
        picked += list(np.flatnonzero(mine & (preds == c))[:n_correct])
        picked += list(np.flatnonzero(mine & (preds != c))[:n_wrong])
    return np.asarray(picked, dtype=np.int64)
