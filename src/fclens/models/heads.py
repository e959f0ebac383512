"""A model's classifier as one linear map: logits = features @ W.T + b.

`features` is `forward_head(x, pre_logits=True)`, the exact input of the last classifier. In
timm that holds for every head type, but the classifier comes in several shapes:

- nn.Linear; heads with a pre-logits layer (MLP, norm, 1x1 conv before the FC) and token or
  attention-pooled heads (ViT, AttentionPool2d) expose their final nn.Linear, and pre_logits
  already includes the pooling and the pre-logits layer;
- a 1x1 nn.Conv2d (dpn, dla, resnetv2): weight (C, D, 1, 1) is W (C, D);
- a wrapper whose pre_logits output is the input of its `.fc` (ClassifierHead and friends) or
  `.linear` (cpubone's LinearLayer, without norm or activation after it);
- BatchNorm1d -> Linear (`NormLinear`: levit, efficientvit_msra, repvit, iformer): folded with
  timm's own `fuse()`, as it does for deployment;
- distillation pairs (head, head_dist) averaged at inference, both reading the same features;
- one head per branch (CrossViT mean, EfficientViM softmax-weighted sum), the features being the
  branches' pooled tokens concatenated: W is the heads' weights side by side, scaled.

Anything else raises FclensError naming the model and the classifier type, rather than guess.
VOLO's classifier is read, but its logits add a non-linear term, so feature extraction refuses
it. The lists below come from reading timm 1.0's forward_head code; benchmarks/zoo_sweep.py
checks them on one model of every timm family.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fclens.core.errors import FclensError
from fclens.core.tables import Head

# wrappers whose forward(x, pre_logits=True) returns the input of their `.fc`
_FC_WRAPPERS = ("ClassifierHead", "NormMlpClassifierHead", "ClNormMlpClassifierHead")
# BatchNorm1d -> Linear heads with a `fuse()` that returns the folded nn.Linear (no side effects)
_FUSABLE = ("NormLinear", "RepVitClassifier")
# models whose logits add a non-linear term to the classifier's: model class -> (the attribute
# that enables it, what it does). Their weights are still the classifier's; their logits are not
# a linear map of the pre_logits features, so feature extraction (exact=True) refuses them.
_LOGIT_EXTRAS = {"VOLO": ("aux_head", "add 0.5 x the max over tokens of aux_head (token "
                                      "labelling)")}
# models whose forward_head averages head(x) and head_dist(x) of the same pre_logits x
_SAME_INPUT_DISTILLED = ("LevitDistilled", "EfficientFormer", "EfficientFormerV2", "SwiftFormer")
HANDLED = ("Linear", "Conv2d 1x1", *_FC_WRAPPERS, "LinearLayer", *_FUSABLE,
           "distillation pair (head, head_dist)", "CrossVit / EfficientViM per-branch heads")


@dataclass(frozen=True)
class LinearHead:
    """weight (C, D), bias (C,). For an nn.Linear (or 1x1 conv) they are the module's own
    tensors (views), so in-place edits reach the model; folded heads give new tensors."""

    weight: torch.Tensor  # (C, D)
    bias: torch.Tensor  # (C,)
    kind: str  # the classifier's type as get_classifier() returns it, e.g. "Conv2d"
    module: nn.Linear | None = None  # the nn.Linear holding weight and bias, if there is one

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    def to_head(self, names) -> Head:
        """The stored record of this layer (float32 numpy, with its class names)."""
        return Head(self.weight.detach().float().cpu().numpy(),  # (C, D)
                    self.bias.detach().float().cpu().numpy(), tuple(names))


def model_name(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return str(cfg.get("architecture") or type(model).__name__)


def describe(clf) -> str:
    """The classifier's type: 'Linear', 'Conv2d', 'tuple(NormLinear, NormLinear)', ..."""
    if isinstance(clf, (tuple, list)):
        return f"{type(clf).__name__}({', '.join(describe(c) for c in clf)})"
    if isinstance(clf, nn.ModuleList):
        return f"ModuleList({', '.join(describe(c) for c in clf)})"
    return type(clf).__name__


def _bias(b: torch.Tensor | None, w: torch.Tensor) -> torch.Tensor:
    return b if b is not None else torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)


def _single(m: nn.Module) -> tuple[torch.Tensor, torch.Tensor, nn.Linear | None] | None:
    """(W (C, D), b (C,), the Linear owning them or None) of one head module; None if unknown."""
    name = type(m).__name__
    if isinstance(m, nn.Linear):
        return m.weight, _bias(m.bias, m.weight), m
    if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1:
        return m.weight.flatten(1), _bias(m.bias, m.weight), None  # (C, D, 1, 1) -> (C, D)
    if name in _FC_WRAPPERS and isinstance(getattr(m, "fc", None), nn.Module):
        return _single(m.fc)
    if name == "LinearLayer" and getattr(m, "norm", 0) is None and getattr(m, "act", 0) is None:
        return _single(m.linear)  # cpubone: dropout -> linear, nothing after it
    if name in _FUSABLE and callable(getattr(m, "fuse", None)):
        fused = m.fuse()
        if isinstance(fused, nn.Linear):
            return fused.weight.detach(), _bias(fused.bias, fused.weight).detach(), None
    return None


def linear_head(model: nn.Module, exact: bool = False) -> LinearHead:
    """The classifier of `model` as (W (C, D), b (C,)) such that forward_head(x) equals
    forward_head(x, pre_logits=True) @ W.T + b in eval mode. exact=False also accepts a model
    whose logits add a non-linear extra to that (VOLO): W, b are then its classifier's."""
    clf = model.get_classifier()
    kind = describe(clf)
    cls = type(model).__name__

    def fail(why: str) -> FclensError:
        return FclensError(f"{model_name(model)}: classifier is {kind}; {why}. fclens handles: "
                           f"{', '.join(HANDLED)}")

    attr, extra = _LOGIT_EXTRAS.get(cls, ("", ""))
    if exact and attr and getattr(model, attr, None) is not None:
        raise FclensError(f"{model_name(model)}: its logits {extra}, so they are not a linear "
                          f"map of the pre_logits features; the weight stages read its "
                          f"classifier ({kind}), feature extraction cannot")

    head = getattr(model, "head", None)
    if (type(head).__name__ in _FUSABLE and head is not clf and isinstance(clf, nn.Module)
            and any(m is clf for m in head.modules())):
        # efficientvit_msra: get_classifier() is head.linear, but pre_logits stops before the BN
        clf, kind = head, type(head).__name__
    if isinstance(clf, (nn.Identity, type(None))):
        raise fail("the model has no classifier (num_classes=0)")
    if isinstance(clf, tuple) and cls == "EfficientViMDistilled":
        parts = [_branches(hs, ws.softmax(-1), fail)
                 for hs, ws in ((clf[0], model.weights), (clf[1], model.weights_dist))]
        return LinearHead(sum(p[0] for p in parts) / 2, sum(p[1] for p in parts) / 2, kind)
    if isinstance(clf, tuple):
        if cls not in _SAME_INPUT_DISTILLED:
            raise fail(f"{cls}'s heads are not known to read the same features (deit's "
                       f"distilled heads read two different tokens, so no single linear map "
                       f"of pre_logits gives the logits)")
        maps = [_single(c) for c in clf if c is not None]
        if not maps or any(m is None for m in maps):
            raise fail("a head in the pair is not a linear layer")
        w = sum(m[0] for m in maps) / len(maps)  # (C, D): inference averages the heads
        return LinearHead(w, sum(m[1] for m in maps) / len(maps), kind)
    if isinstance(clf, nn.ModuleList):
        if cls == "CrossVit":  # the mean of the branch heads
            coef = torch.full((len(clf),), 1.0 / len(clf))
        elif cls == "EfficientViM":  # a learned softmax-weighted sum
            coef = model.weights.softmax(-1)
        else:
            raise fail(f"per-branch heads of {cls} are not known")
        return LinearHead(*_branches(clf, coef, fail), kind)
    m = _single(clf)
    if m is None:
        raise fail("not a linear map of the pre_logits features that fclens knows")
    return LinearHead(m[0], m[1], kind, m[2])


def _branches(heads: nn.ModuleList, a: torch.Tensor, fail) -> tuple[torch.Tensor, torch.Tensor]:
    """sum_i a_i head_i(x_i) with x = cat(x_i): W = [a_0 W_0, a_1 W_1, ...], b = sum a_i b_i."""
    maps = [_single(h) for h in heads]
    if any(m is None for m in maps):
        raise fail("a branch head is not a linear layer")
    w = torch.cat([a[i] * m[0] for i, m in enumerate(maps)], dim=1)  # (C, sum D_i)
    return w, sum(a[i] * m[1] for i, m in enumerate(maps))


class FeaturePath(nn.Module):
    """uint8 NHWC (or normalized float NCHW) -> (features (B, D), logits (B, C)).

    The one definition of what extraction computes: torch runs it eagerly, engines run its ONNX
    export. Logits come from the model's own head, so FC(features) == logits checks the split.
    """

    def __init__(self, norm: nn.Module, model: nn.Module) -> None:
        super().__init__()
        self.norm, self.model = norm, model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.model.forward_features(self.norm(x))
        return self.model.forward_head(fmap, pre_logits=True), self.model.forward_head(fmap)
