"""Weight banding, quantified, and the experiment that tests where it comes from.

Distill ("Weight Banding", 2021) saw the kernels of the last convolutions of image classifiers
turn into horizontal stripes, and traced it to the global average pooling (GAP) after them.
This module turns "looks striped" into a number, per layer, and retrains a small CIFAR CNN with
GAP and with the final map flattened to test the claim.

**The score.** Take one signed kernel K (kh x kw) of one (output, input) channel pair, and
remove its spatial mean: K0 = K - mean(K), energy E = |K0|^2. Its horizontal part R holds the
row means (R[i, j] = mean_j K0[i, j]: constant along each row, a horizontal stripe pattern); its
vertical part C the column means. Both are orthogonal projections of K0, onto subspaces of
dimension kh - 1 and kw - 1 of the (kh*kw - 1)-dimensional zero-mean kernels, and the two
subspaces are orthogonal to each other (sum_ij a_i b_j = sum_i a_i * sum_j b_j = 0 when both are
zero-mean), so

    horizontal = |R|^2 / E,   vertical = |C|^2 / E,   horizontal + vertical <= 1.

A layer's score is the mean of its kernels' shares; zero-energy (constant) kernels have no
pattern and are skipped. Every (out, in) kernel is scored on its own, for any conv: dense,
grouped and depthwise alike.

**Chance.** For white noise K, K0 is isotropic Gaussian in its (kh*kw - 1)-dimensional space,
and the share of such a vector in a d-dimensional subspace is Beta(d/2, (n - d)/2), mean d/n:

    chance = (kh - 1) / (kh*kw - 1)        (vertical: (kw - 1) / (kh*kw - 1))

which is 2/8 = 0.25 for 3 x 3 and 4/24 = 0.167 for 5 x 5 kernels. Because the layer score is a
mean of shares, not a ratio of summed energies, its expectation for noise is exactly this.

**Non-square kernels** use the same definition (row means, column means); only the chance
levels differ between the two directions, so both are reported (`chance` is the horizontal
one, `chance_vertical` the other). A 1 x k kernel has one row: its row-mean part is its mean,
which is removed, so horizontal = 0 = chance and vertical = 1 = its chance (a k x 1 kernel the
reverse): such a layer cannot show banding beyond chance, and the chance level says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fclens.core.errors import FclensError

if TYPE_CHECKING:
    from fclens.core.params import BandingExperiment

_TINY = 1e-12  # relative energy below which a kernel counts as constant (float rounding)


def chance_levels(kh: int, kw: int) -> tuple[float, float]:
    """(horizontal, vertical) mean score of white-noise kh x kw kernels (see the docstring)."""
    n = kh * kw - 1
    return (kh - 1) / n, (kw - 1) / n


def banding_scores(w: np.ndarray) -> dict:
    """w (O, I, kh, kw), a conv weight -> {horizontal, vertical, chance, chance_vertical,
    n_kernels}: each (o, i) kernel's shares of its mean-free energy, averaged over the kernels.
    A layer whose kernels are all constant gives NaN scores and n_kernels 0."""
    w = np.asarray(w)
    if w.ndim != 4:
        raise FclensError(f"conv weights must be 4-D (out, in, kh, kw), got shape {w.shape}")
    o, i, kh, kw = w.shape
    if o * i == 0:
        raise FclensError(f"conv weights of shape {w.shape} hold no kernel")
    if kh * kw < 2:
        raise FclensError(f"conv weights of shape {w.shape}: a {kh}x{kw} kernel has no spatial "
                          f"pattern; expected kh * kw > 1")
    k = w.reshape(o * i, kh, kw).astype(np.float64)  # (N, kh, kw): every kernel on its own
    if not np.isfinite(k).all():
        raise FclensError(f"conv weights of shape {w.shape} hold NaN or inf; expected finite")
    k0 = k - k.mean(axis=(1, 2), keepdims=True)  # (N, kh, kw), spatial mean removed
    energy = (k0**2).sum(axis=(1, 2))  # (N,)
    # the row-mean part is constant along each of the kh rows: its energy is kw * sum(means^2)
    horizontal = kw * (k0.mean(axis=2) ** 2).sum(axis=1)  # (N,)
    vertical = kh * (k0.mean(axis=1) ** 2).sum(axis=1)  # (N,)
    keep = energy > _TINY * (k**2).sum(axis=(1, 2))  # constant (or zero) kernels: no pattern
    ch, cv = chance_levels(kh, kw)
    n = int(keep.sum())
    if n == 0:
        return {"horizontal": float("nan"), "vertical": float("nan"), "chance": ch,
                "chance_vertical": cv, "n_kernels": 0}
    return {"horizontal": float((horizontal[keep] / energy[keep]).mean()),
            "vertical": float((vertical[keep] / energy[keep]).mean()),
            "chance": ch, "chance_vertical": cv, "n_kernels": n}


def spatial_convs(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """(name, module) of every Conv2d with a kernel larger than 1x1, in module (= construction)
    order, which is depth order for the sequential CNNs here."""
    found = [(n, m) for n, m in model.named_modules()
             if isinstance(m, nn.Conv2d) and m.kernel_size[0] * m.kernel_size[1] > 1]
    if not found:
        raise FclensError(f"{type(model).__name__}: no Conv2d with a kernel larger than 1x1, so "
                          f"no weight banding to score; expected a convolutional network")
    return found


def model_banding(model: nn.Module) -> dict:
    """The content of metrics/<m>/banding.json: every spatial conv's scores (`index` = its
    depth order), the last one's (it feeds the pooling in a CIFAR ResNet), the median of the
    others' horizontal scores, and the layer with the highest horizontal score."""
    layers = {}
    for idx, (name, conv) in enumerate(spatial_convs(model)):
        s = banding_scores(conv.weight.detach().float().cpu().numpy())  # (O, I/groups, kh, kw)
        layers[name] = {**s, "index": idx}
    names = list(layers)
    last = layers[names[-1]]
    others = [layers[n]["horizontal"] for n in names[:-1]]
    others = [h for h in others if np.isfinite(h)]
    scored = [n for n in names if np.isfinite(layers[n]["horizontal"])]
    best = max(scored, key=lambda n: layers[n]["horizontal"]) if scored else names[-1]
    return {"layers": layers, "n_layers": len(names),
            "last_layer": names[-1], "last_layer_horizontal": last["horizontal"],
            "last_layer_vertical": last["vertical"], "chance": last["chance"],
            "median_other_layers_horizontal": float(np.median(others)) if others else None,
            "max_layer": best, "max_layer_horizontal": layers[best]["horizontal"],
            "max_layer_chance": layers[best]["chance"]}


# ---- the experiment: does global average pooling cause the banding? -------------------------

POOLS = ("gap", "flatten")


class SmallCnn(nn.Module):
    """Three 3x3 conv layers (ReLU; 2x2 max pooling after the first two), then the FC layer on
    the final map either averaged over space (`gap`) or flattened (`flatten`). Everything else
    is the same, so a difference in the last conv's banding is the pooling's."""

    def __init__(self, pool: str, size: tuple[int, int], n_classes: int,
                 widths: tuple[int, int, int] = (16, 32, 32)) -> None:
        super().__init__()
        if pool not in POOLS:
            raise FclensError(f"pool {pool!r}; allowed: {', '.join(POOLS)}")
        if size[0] % 4 or size[1] % 4:
            raise FclensError(f"images of {size[0]}x{size[1]} pixels; expected sides divisible "
                              f"by 4 (two 2x2 poolings)")
        a, b, c = widths
        self.pool = pool
        self.conv1 = nn.Conv2d(3, a, 3, padding=1)
        self.conv2 = nn.Conv2d(a, b, 3, padding=1)
        self.conv3 = nn.Conv2d(b, c, 3, padding=1)  # the last conv: the one scored
        cells = (size[0] // 4) * (size[1] // 4)
        self.fc = nn.Linear(c if pool == "gap" else c * cells, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (N, a, H/2, W/2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (N, b, H/4, W/4)
        x = F.relu(self.conv3(x))  # (N, c, H/4, W/4)
        x = x.mean(dim=(2, 3)) if self.pool == "gap" else x.flatten(1)  # (N, c) or (N, c*cells)
        return self.fc(x)


def balanced_subset(labels: np.ndarray, n: int) -> np.ndarray:
    """Indices of n training images, classes taken in turn (the i-th image of every class, then
    the (i+1)-th, ...): balanced whatever the split's order (the JPEG export is sorted by
    class), the same for every seed, and a prefix of the subset for a larger n."""
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")  # (N,) grouped by class, file order inside
    first = np.searchsorted(labels[order], labels[order])  # (N,) where each one's class starts
    rank = np.empty(len(labels), np.int64)
    rank[order] = np.arange(len(labels)) - first  # (N,) position within its own class
    return np.lexsort((labels, rank))[:n]  # by rank, then class: round robin over classes


def _normalizer(images: np.ndarray) -> Callable[[np.ndarray], torch.Tensor]:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) standardized with the training set's per-channel
    mean and std (computed once, in float64, so it does not depend on batching)."""
    x = images.reshape(-1, 3).astype(np.float64)
    mean = torch.tensor(x.mean(0), dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(x.std(0) + 1e-8, dtype=torch.float32).view(1, 3, 1, 1)

    def norm(batch: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float()
        return (t - mean) / std

    return norm


def train_small_cnn(images: np.ndarray, labels: np.ndarray, n_classes: int, pool: str,
                    cfg: BandingExperiment, seed: int
                    ) -> tuple[SmallCnn, Callable[[np.ndarray], torch.Tensor]]:
    """images (N, H, W, 3) uint8, labels (N,) -> (trained SmallCnn in eval mode, its input
    normalizer). Deterministic given the seed: the seed fixes the initialisation and the batch
    order; with the same seed, the GAP and flatten nets share their conv initialisation."""
    norm = _normalizer(images)
    torch.manual_seed(seed)
    model = SmallCnn(pool, images.shape[1:3], n_classes)
    g = torch.Generator().manual_seed(seed)
    y = torch.from_numpy(labels.astype(np.int64))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    model.train()
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(images), generator=g).numpy()
        for i in range(0, len(perm), cfg.batch_size):
            idx = np.sort(perm[i:i + cfg.batch_size])  # sorted: contiguous-ish numpy gather
            loss = F.cross_entropy(model(norm(images[idx])), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval(), norm


@torch.no_grad()
def accuracy(model: nn.Module, norm: Callable[[np.ndarray], torch.Tensor], images: np.ndarray,
             labels: np.ndarray, batch_size: int = 1000) -> float:
    hits = 0
    for i in range(0, len(images), batch_size):
        pred = model(norm(images[i:i + batch_size])).argmax(1).numpy()
        hits += int((pred == labels[i:i + batch_size]).sum())
    return hits / len(images)


def banding_experiment(train, test, cfg: BandingExperiment) -> dict:
    """train, test: decoded splits (`data.Split`: images (N, H, W, 3) uint8, labels (N,),
    class_names). Per seed, the same SmallCnn trained with GAP and with the final map
    flattened; the last conv's horizontal banding of each. The content of
    metrics/banding_experiment.json.

    `claim_holds` (Distill: GAP causes the banding) is true only if GAP's score is higher than
    flatten's for every seed. Scores and accuracies are rounded to 4 digits: training on a CPU
    is deterministic for a machine and thread count, and the rounding hides float noise."""
    for split in (train, test):
        if not hasattr(split, "images"):
            raise FclensError("the banding experiment needs decoded images (an archive dataset "
                              "such as cifar10), got an image-folder index")
    seeds = cfg.seeds
    if not seeds:
        raise FclensError("banding_experiment.seeds: empty; expected at least one seed")
    if cfg.n_train > len(train.labels):
        raise FclensError(f"banding_experiment.n_train: {cfg.n_train} exceeds the "
                          f"{len(train.labels)} training images; allowed: "
                          f"1..{len(train.labels)}")
    n_classes, test_x, test_y = len(train.class_names), test.images, test.labels
    keep = balanced_subset(train.labels, cfg.n_train)  # (n_train,)
    x, y = train.images[keep], train.labels[keep]
    res: dict[str, list[float]] = {f"{k}_{p}": [] for k in ("horizontal", "acc") for p in POOLS}
    chance = None
    for seed in seeds:
        for pool in POOLS:
            model, norm = train_small_cnn(x, y, n_classes, pool, cfg, seed)
            s = banding_scores(model.conv3.weight.detach().numpy())  # (c, b, 3, 3)
            chance = s["chance"]
            res[f"horizontal_{pool}"].append(round(s["horizontal"], 4))
            res[f"acc_{pool}"].append(round(accuracy(model, norm, test_x, test_y), 4))

    def mean(v: list[float]) -> float:
        return round(float(np.mean(v)), 4)

    gap, flat = res["horizontal_gap"], res["horizontal_flatten"]
    return {"seeds": list(seeds), "epochs": cfg.epochs, "n_train": len(x),
            "n_test": len(test_x), "chance": round(chance, 4),
            "gap_last_layer_horizontal": mean(gap), "flatten_last_layer_horizontal": mean(flat),
            "gap_last_layer_horizontal_by_seed": gap,
            "flatten_last_layer_horizontal_by_seed": flat,
            "test_acc_gap": mean(res["acc_gap"]), "test_acc_flatten": mean(res["acc_flatten"]),
            "test_acc_gap_by_seed": res["acc_gap"],
            "test_acc_flatten_by_seed": res["acc_flatten"],
            "claim_holds": all(a > b for a, b in zip(gap, flat))}
