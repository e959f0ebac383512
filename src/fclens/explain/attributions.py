"""Derivatives of a target with respect to the input pixels (the lecture's fourth way of looking
at a network), by captum: vanilla gradient (Simonyan et al. 2014), SmoothGrad (Smilkov et al.
2017) and Integrated Gradients (Sundararajan et al. 2017).

The targets are those of the CAMs (`cams.TargetModel`): target k of image i is
pooled(x_i) @ m[i, k] + c[i, k] (a class logit, a decomposed logit, a channel set). A map is
one value per pixel, (N, K, H, W):
- saliency and smoothgrad: |gradient| summed over the colour channels (a gradient's sign says
  nothing without the input it multiplies); SmoothGrad averages the raw gradients of
  `n_samples` noisy copies (std `sigma` in normalized input units, seeded per target) first;
- integrated_gradients: the attribution summed over the colour channels, signed (it sums to
  f(x) - f(baseline): completeness), from the given baseline (faithfulness passes its blurred
  image, the deletion metric's baseline) in `n_steps` Riemann steps (captum's Gauss-Legendre).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from captum.attr import IntegratedGradients, NoiseTunnel, Saliency
from torch import nn

from fclens.core.constants import CAM_METHODS, INPUT_METHODS
from fclens.core.errors import FclensError
from fclens.explain.cams import TargetModel, compute_cams

if TYPE_CHECKING:
    from fclens.core.params import Faithfulness


def input_maps(model: nn.Module, x: torch.Tensor, m: np.ndarray, c: np.ndarray, method: str,
               baseline: torch.Tensor | None = None, n_samples: int = 8, sigma: float = 0.15,
               n_steps: int = 16, seed: int = 0) -> torch.Tensor:
    """(B, K, H, W) maps of K targets per image (x (B, 3, H, W) normalized, m (B, K, D),
    c (B, K)); baseline (B, 3, H, W): integrated_gradients' (None: zeros, the mean image)."""
    if method not in INPUT_METHODS:
        raise FclensError(f"input-gradient method {method!r}; allowed {', '.join(INPUT_METHODS)}")
    b, k, d = m.shape
    tm = TargetModel(model, torch.from_numpy(m.reshape(b * k, d)),
                     torch.from_numpy(c.reshape(b * k))).to(x.device).eval()
    out = []
    with torch.enable_grad():
        for j in range(k):
            target = [i * k + j for i in range(b)]
            torch.manual_seed(seed + j)
            xi = x.detach().clone().requires_grad_(True)
            if method == "saliency":
                a = Saliency(tm).attribute(xi, target=target, abs=False).abs()
            elif method == "smoothgrad":
                a = NoiseTunnel(Saliency(tm)).attribute(
                    xi, nt_type="smoothgrad", nt_samples=n_samples, stdevs=sigma,
                    target=target, abs=False).abs()
            else:
                a = IntegratedGradients(tm).attribute(
                    xi, baselines=baseline, target=target, n_steps=n_steps,
                    internal_batch_size=b * n_steps)
            out.append(a.detach().float().sum(1).cpu())  # (B, H, W)
    return torch.stack(out, 1)


def raw_maps(model: nn.Module, x: torch.Tensor, m: np.ndarray, c: np.ndarray, method: str,
             batch_size: int, seed: int) -> torch.Tensor:
    """(N, K, h, w) unnormalized maps at the hooked layer, `batch_size` images per call."""
    return torch.cat([torch.from_numpy(compute_cams(
        model, x[i:i + batch_size], m[i:i + batch_size], c[i:i + batch_size], method, seed=seed,
        raw=True).maps) for i in range(0, len(x), batch_size)])


def method_maps(model: nn.Module, x: torch.Tensor, m: np.ndarray, c: np.ndarray, method: str,
                s: Faithfulness, seed: int, baseline: torch.Tensor) -> torch.Tensor:
    """(N, K, h, w) raw maps of any `MAP_METHODS` entry: a CAM at its layer, or an input
    gradient at input size (`input_maps`; Integrated Gradients from `baseline`)."""
    if method in CAM_METHODS:
        return raw_maps(model, x, m, c, method, s.batch_size, seed)
    bs = s.batch_size
    return torch.cat([input_maps(model, x[i:i + bs], m[i:i + bs], c[i:i + bs], method,
                                 baseline[i:i + bs], s.smoothgrad_samples, s.smoothgrad_sigma,
                                 s.ig_steps, seed) for i in range(0, len(x), bs)])
