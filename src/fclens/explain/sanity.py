"""The model-parameter randomization check (Adebayo et al. 2018) of `faithfulness`: raw maps of
the trained model against those of copies whose last block before the pooling (FC kept) or every
layer (FC included) is replaced by seeded normal noise; Spearman rank correlation per image at
the map's own resolution, median over images. A map that explains the model must decorrelate."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy import stats
from torch import nn

from fclens.core.errors import FclensError
from fclens.explain.attributions import method_maps
from fclens.models.heads import linear_head

if TYPE_CHECKING:
    from fclens.core.params import Faithfulness
    from fclens.explain.faithfulness import TargetSets

SCOPES = ("last_block", "all")


def last_block(model: nn.Module) -> list[str]:
    """Names of the modules between the last block and the global pooling, that block included:
    layer4[-1] (timm ResNets) or layer3[-1] (CIFAR ResNets); for timm EfficientNet/MobileNet the
    last inverted-residual block and the 1x1 head conv + BN that follow it."""
    mods = dict(model.named_modules())
    for stage in ("layer4", "layer3"):
        if isinstance(mods.get(stage), nn.Sequential):
            return [f"{stage}.{len(mods[stage]) - 1}"]
    if isinstance(blocks := mods.get("blocks"), nn.Sequential):
        name = f"blocks.{len(blocks) - 1}"
        if isinstance(blocks[-1], nn.Sequential):
            name += f".{len(blocks[-1]) - 1}"
        return [name] + [n for n in ("conv_head", "bn2") if n in mods]
    raise FclensError(f"{type(model).__name__}: no layer4/layer3/blocks stage; the sanity check "
                      f"knows the last block of ResNets and EfficientNets only")


def randomized(model: nn.Module, scope: str, seed: int) -> nn.Module:
    """A copy whose parameters in `scope` are i.i.d. normal noise with each tensor's own mean and
    std (seeded): the learned structure is gone, each layer's scale kept, so activations neither
    vanish nor explode and the maps stay defined. BatchNorm running statistics are kept.
    last_block: `last_block(model)`, the FC layer kept; all: every parameter, FC included."""
    if scope not in SCOPES:
        raise FclensError(f"randomization scope {scope!r}; allowed {', '.join(SCOPES)}")
    rnd = copy.deepcopy(model).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in (last_block(rnd) if scope == "last_block" else [""]):
            for p in rnd.get_submodule(name).parameters():  # registration order: reproducible
                noise = torch.randn(p.shape, generator=g).to(p)
                p.copy_(noise * p.std(correction=0) + p.mean())
    return rnd


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each row pair of (N, P) arrays (average ranks for ties);
    NaN where either row is constant."""
    ra = stats.rankdata(a, axis=1)
    rb = stats.rankdata(b, axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    den = np.sqrt((ra ** 2).sum(1) * (rb ** 2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(1) / den, np.nan)


def sanity_rank_corr(model: nn.Module, x: torch.Tensor, cls: np.ndarray, sets: TargetSets,
                     trained: torch.Tensor, s: Faithfulness, seed: int, method: str,
                     baseline: torch.Tensor) -> dict[str, dict[str, float | None]]:
    """Median Spearman correlation over images between the trained model's raw maps (N, K, h, w)
    and each randomized copy's, per non-random target. For `all` the logit target uses the
    randomized FC row of the same class; channel sets keep their indices."""
    names = sets.names
    m, c = sets.m[:, :len(names)].copy(), sets.c[:, :len(names)].copy()
    out: dict[str, dict[str, float | None]] = {t: {} for t in names}
    for scope in SCOPES:
        rnd = randomized(model, scope, seed)
        m2, c2 = m.copy(), c.copy()
        if scope == "all" and "logit" in names:
            fc = linear_head(rnd)  # any timm head type, as one linear map
            m2[:, names.index("logit")] = fc.weight.detach().float().cpu().numpy()[cls]
            c2[:, names.index("logit")] = fc.bias.detach().float().cpu().numpy()[cls]
        maps = method_maps(rnd, x, m2, c2, method, s, seed, baseline)  # (N, T, h, w)
        for j, t in enumerate(names):
            rho = spearman_rows(trained[:, j].flatten(1).numpy(), maps[:, j].flatten(1).numpy())
            out[t][scope] = None if np.isnan(rho).all() else float(np.nanmedian(rho))
        del rnd
    return out
