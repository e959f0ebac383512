"""Parameters as pictures: first-layer filters, weight banding (NMF, and its score by depth), the
FC matrix by chain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.cluster import hierarchy
from scipy.spatial.distance import pdist
from sklearn.decomposition import NMF
from torch import nn

from fclens.analysis.banding import model_banding
from fclens.analysis.trees import chain_rank
from fclens.core.errors import FclensError
from fclens.core.tables import Head
from fclens.plots.base import plot_tiles
from fclens.plots.weights import plot_banding_by_depth, plot_fc_matrix


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The first convolution that reads the RGB input (module order follows construction)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.in_channels == 3:
            return m
    raise FclensError(f"{type(model).__name__}: no Conv2d with 3 input channels")


def filter_tiles(w: np.ndarray) -> np.ndarray:
    """(O, 3, kh, kw) RGB filters -> (O, kh, kw, 3) in [0, 1], 0.5 = zero weight, per filter."""
    scale = np.abs(w).reshape(len(w), -1).max(1)[:, None, None, None]
    return (w / (2 * np.where(scale > 0, scale, 1)) + 0.5).transpose(0, 2, 3, 1)


def banding_tiles(w: np.ndarray, n_tiles: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """Distill's weight-banding view of a conv layer: one (kh, kw, 3) RGB tile per output neuron.

    For each output neuron, its (in, kh, kw) weights become a (kh*kw, 2*in) non-negative matrix
    (positive and negative parts side by side); NMF reduces the input-channel axis to 3 factors,
    shown as RGB. Depthwise/grouped kernels with fewer than 3 inputs per neuron are shown signed
    as in `filter_tiles` (grey = 0), since there is no channel axis to factor.
    """
    o, i, kh, kw = w.shape
    w = w[:n_tiles]
    if i < 3:
        return filter_tiles(np.repeat(w[:, :1], 3, axis=1)), "signed kernel (grey = 0)"
    tiles = np.empty((len(w), kh, kw, 3))
    for n, wn in enumerate(w):
        x = wn.reshape(i, kh * kw).T  # (kh*kw, in)
        x = np.concatenate([np.maximum(x, 0), np.maximum(-x, 0)], axis=1)  # (kh*kw, 2*in)
        h = NMF(3, init="nndsvda", max_iter=2000, random_state=seed).fit_transform(x)  # (kh*kw, 3)
        tiles[n] = (h / (h.max() or 1)).reshape(kh, kw, 3)
    return tiles, "NMF of |weights| over input channels, 3 factors as RGB"


def class_order(w: np.ndarray) -> np.ndarray:
    """Classes in the leaf order of an average-linkage clustering of their weight rows."""
    if len(w) < 3:
        return np.arange(len(w))
    # a constant row (e.g. all zeros) has no correlation with anything: distance 1, not NaN
    dist = np.nan_to_num(pdist(w, metric="correlation"), nan=1.0)
    return hierarchy.leaves_list(hierarchy.linkage(dist, method="average"))


def draw_pictures(model: nn.Module, head: Head, name: str, n_tiles: int, seed: int,
                  out: str | Path) -> dict:
    """first_layer_filters.png, weight_banding.png, banding_by_depth.png and fc_matrix.png of one
    model; returns the banding scores (`banding.model_banding`: metrics/<m>/banding.json).

    weight_banding.png shows the spatial conv with the highest horizontal banding score, which
    need not be the last one."""
    out = Path(out)

    w1 = first_conv(model).weight.detach().float().numpy()[:n_tiles]  # (O, 3, kh, kw)
    plot_tiles(filter_tiles(w1), f"{name}: first-layer filters (grey = 0)",
               out / "first_layer_filters.png")
    scores = model_banding(model)
    layer = scores["max_layer"]
    conv = dict(model.named_modules())[layer]
    tiles, how = banding_tiles(conv.weight.detach().float().numpy(), n_tiles, seed)
    plot_tiles(tiles, f"{name}: {layer} {tuple(conv.weight.shape)}, the most banded spatial conv: "
               f"horizontal score {scores['max_layer_horizontal']:.3f} (chance "
               f"{scores['max_layer_chance']:.3f})\n{how}", out / "weight_banding.png")
    plot_banding_by_depth(scores, f"{name}: banding score of each spatial conv (last, "
                          f"{scores['last_layer']}: horizontal "
                          f"{scores['last_layer_horizontal']:.3f})",
                          out / "banding_by_depth.png")
    plot_fc_matrix(head.w, class_order(head.w), chain_rank(head.w), list(head.names),
                   out / "fc_matrix.png")
    return scores
