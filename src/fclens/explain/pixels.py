"""A model seen from pixel space: [0, 1] float images in, the pooled penultimate features (the
FC layer's exact input) out. Attacks and feature visualizations optimize pixels, so the
model's own normalization (pretrained_cfg mean/std) sits inside the graph here;
`models.inputs.normalizer` normalizes uint8 batches and passes floats through."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class PixelFeatures(nn.Module):
    """(B, 3, H, W) pixels in [0, 1] -> (B, D) pooled features."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        cfg = model.pretrained_cfg
        for k in ("mean", "std"):
            self.register_buffer(k, torch.tensor(cfg[k], dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.model.forward_features((x - self.mean) / self.std)
        return self.model.forward_head(f, pre_logits=True)


class HeadNet(nn.Module):
    """Pixels in [0, 1] (B, 3, H, W) -> logits (B, C) of the pooled features under a given
    linear head (w (C, D), b (C,)): the model's own head or a sparse one."""

    def __init__(self, model: nn.Module, w: np.ndarray, b: np.ndarray) -> None:
        super().__init__()
        self.features = PixelFeatures(model)
        self.register_buffer("w", torch.as_tensor(w, dtype=torch.float32))
        self.register_buffer("b", torch.as_tensor(b, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x) @ self.w.T + self.b
