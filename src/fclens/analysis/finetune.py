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

from fclens.analysis.decompose import index_mask
from fclens.core.errors import FclensError
from fclens.core.params import Extract, Finetune
from fclens.core.tables import Head, Influential
from fclens.extract.loop import extract
from fclens.models.heads import linear_head
from fclens.models.inputs import normalizer, resolve_device, uint8_batches


def finetune_decomposed(model: nn.Module, images: np.ndarray, labels: np.ndarray,
                        mask: np.ndarray, head: Head, cfg: Finetune, seed: int,
                        device: str,
                        on_epoch: Callable[[int, dict], None] | None = None) -> nn.Module:
    """images (N, H, W, 3) uint8, labels (N,), mask (C, D) bool; returns the model in eval mode."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    dev = resolve_device(device)
    w, b, lr, batch_size = head.w, head.b, cfg.lr, cfg.batch_size
    model = model.to(dev).train()
    fc = linear_head(model).module  # the nn.Linear itself: its weights are masked in place
    if fc is None or fc.bias is None:
        raise FclensError(f"finetune.models: {type(model).__name__}'s classifier is "
                          f"{linear_head(model).kind}; fine-tuning needs an nn.Linear with a bias")
    m = torch.from_numpy(mask.astype(np.float32)).to(dev)  # (C, D)
    with torch.no_grad():
        fc.weight.copy_(torch.from_numpy(w).to(dev) * m)
        fc.bias.copy_(torch.from_numpy(b).to(dev))
    norm = normalizer(model).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x = torch.from_numpy(images)  # (N, H, W, 3) uint8
    y = torch.from_numpy(labels.astype(np.int64))
    for epoch in range(cfg.epochs):
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


def finetune_and_test(model: nn.Module, train, test, head: Head, infl: Influential,
                      cfg: Finetune, seed: int, device: str, acc_original: float) -> dict:
    """finetune.json: test accuracy of the whole network fine-tuned under the decomposed head."""
    if not hasattr(train, "images"):
        raise FclensError("finetune.models: fine-tuning needs an archive dataset (decoded "
                          "arrays); image folders are not supported")
    losses: list[float] = []
    mask = index_mask(infl.idx, head.dim)
    model = finetune_decomposed(model, train.images, train.labels, mask, head, cfg, seed, device,
                                on_epoch=lambda e, info: losses.append(info["train_loss"]))
    ecfg = Extract(device=device, batch_size=cfg.batch_size)
    acc = extract(model, uint8_batches(test.images, test.labels, cfg.batch_size), ecfg).accuracy
    rel = acc / acc_original if acc_original > 0 else float("nan")
    return {"acc_decomposed_finetuned": acc, "rel_acc_finetuned": rel,
            "acc_original": acc_original, "finetune_train_loss": losses,
            "epochs": cfg.epochs, "lr": cfg.lr, "batch_size": cfg.batch_size}
