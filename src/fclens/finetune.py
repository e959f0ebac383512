"""Whole-network fine-tuning with the decomposed head, as in the code of "Decomposing the Deep".

Every layer trains (Adam); the FC weights outside each class's influential indices stay exactly
zero, so the network learns to put each class's evidence into its own few features. Plain
cross-entropy on the training images, no augmentation (the paper's schedule is not published).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .extract import fc_layer, normalizer, resolve_device


def finetune_decomposed(model: nn.Module, images: np.ndarray, labels: np.ndarray,
                        mask: np.ndarray, w: np.ndarray, b: np.ndarray, epochs: int, lr: float,
                        batch_size: int, seed: int, device: str = "auto",
                        on_epoch: Callable[[int, dict], None] | None = None) -> nn.Module:
    """images (N, H, W, 3) uint8, labels (N,), mask (C, D) bool; returns the model in eval mode."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    dev = resolve_device(device)
    model = model.to(dev).train()
    fc = fc_layer(model)
    m = torch.from_numpy(mask.astype(np.float32)).to(dev)  # (C, D)
    with torch.no_grad():
        fc.weight.copy_(torch.from_numpy(w).to(dev) * m)
        fc.bias.copy_(torch.from_numpy(b).to(dev))
    norm = normalizer(model).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x = torch.from_numpy(images)  # (N, H, W, 3) uint8
    y = torch.from_numpy(labels.astype(np.int64))
    for epoch in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        loss_sum, correct = 0.0, 0
        for i in tqdm(range(0, len(x), batch_size), desc=f"finetune {epoch}", mininterval=5):
            idx = perm[i:i + batch_size]
            xb, yb = norm(x[idx].to(dev)), y[idx].to(dev)
            logits = model(xb)  # (B, C)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                fc.weight.mul_(m)  # the mask is fixed: a zero weight never comes back
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
        if on_epoch:
            on_epoch(epoch, {"train_loss": loss_sum / len(x), "train_acc": correct / len(x)})
    return model.eval()
