"""Maximum-response synthetic inputs (the lecture's fifth way): for every class and objective, an
image in [0, 1] pixel space that maximizes a linear target of the pooled features, by MACO
(Fel et al., NeurIPS 2023) and by the Fourier parameterization (Olah et al., Distill 2017).

Both methods draw the image as  x = sigmoid(standardize(irfft2(S)) @ C)  (C: the colour
correlation's square root, so the learned spectrum lives in decorrelated colours):
  MACO     S = M * exp(i * standardize(phi)): the magnitude M is fixed to a natural-image spectrum
           (explain.spectrum), only the phase phi is learned;
  Fourier  S = standardize(Z) / max(|f|, 1/n)^decay: the whole complex spectrum Z is learned,
           scaled so that it starts with a natural 1/f falloff.
Each step scores n_crops random zoom / shift / noise copies of every image (transformation
robustness) through the model's own normalization, and ascends the targets' sum. Every
(objective, class) is one row of ONE batch per method: Adam, per-image standardization and the
eval-mode model never mix rows.
MACO's transparency map is horama's: |d loss / d x| accumulated over the steps.

Why not horama.maco / horama.fourier (0.3.0) as they are: they optimize one image (3-D asserts;
`standardize` over the whole tensor would couple a batch), download the spectrum at run time,
default to device='cuda', cut 20-25 % boxes from a 1280-pixel canvas (meant for 224-pixel
ImageNet models, not 32-pixel CIFAR), print tqdm bars, and their Fourier scaler has one column
too many for odd widths. Kept from horama: the colour matrix (explain.spectrum.color_sqrt), the
sigmoid image range, the optimizer (NAdam) and the transparency accumulator.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fclens.core.errors import FclensError
from fclens.explain.pixels import PixelFeatures
from fclens.explain.spectrum import color_sqrt

METHODS = ("maco", "fourier")
OBJECTIVES = ("logit", "decomposed", "terminal")
DECAY = 1.0  # Fourier spectrum falloff 1/f^decay (Olah et al.; lucid's default)
ZOOM = (0.8, 1.0)  # crop side as a fraction of the image side
SHIFT = 0.1  # extra shift beyond the image, in half-sides (reflection padding)
NOISE = 0.02  # pixel-space Gaussian noise per crop


# ---------------------------------------------------------------- the targets

@dataclass
class Targets:
    """Row r of the batch maximizes pooled(x_r) @ m[r] + c[r]; rows are objective-major:
    r = objective_index * n_classes + class_position."""

    objectives: list[str]
    classes: np.ndarray  # (K,) the classes visualized
    m: np.ndarray  # (B, D) float32, B = n_objectives * K
    c: np.ndarray  # (B,) float32
    channel: np.ndarray  # (B,) the terminal objective's channel, -1 for the others

    @property
    def cls(self) -> np.ndarray:  # (B,) the class of each row
        return np.tile(self.classes, len(self.objectives))

    @property
    def obj(self) -> np.ndarray:  # (B,) the objective index of each row
        return np.repeat(np.arange(len(self.objectives)), len(self.classes))


def check_names(names: list[str], allowed: tuple[str, ...], key: str) -> None:
    if bad := [n for n in names if n not in allowed]:
        raise FclensError(f"params.yaml {key}: unknown {bad}; allowed: {', '.join(allowed)}")


def build_targets(w: np.ndarray, b: np.ndarray, classes: np.ndarray, objectives: list[str],
                  decomposed: list[np.ndarray], terminal: list[np.ndarray]) -> Targets:
    """w (C, D), b (C,) the FC layer; decomposed[c] / terminal[c]: class c's channel index sets
    (Algorithm-1 set; chain-terminal + set). logit: W[c] x + b_c; decomposed:
    x[I_c] . W[c, I_c] + b_c; terminal: the channel of terminal[c] with the largest W[c, k]."""
    check_names(objectives, OBJECTIVES, "visualize.objectives")
    rows_m, rows_c, chan = [], [], []
    for o in objectives:
        for c in classes:
            m = np.zeros(w.shape[1], np.float32)
            k = -1
            if o == "logit":
                m[:] = w[c]
            elif o == "decomposed":
                idx = np.asarray(decomposed[c], np.int64)
                m[idx] = w[c, idx]
            else:
                idx = np.asarray(terminal[c], np.int64)
                k = int(idx[np.argmax(w[c, idx])])
                m[k] = 1.0
            rows_m.append(m)
            rows_c.append(0.0 if o == "terminal" else float(b[c]))
            chan.append(k)
    return Targets(list(objectives), np.asarray(classes, np.int64), np.stack(rows_m),
                   np.asarray(rows_c, np.float32), np.asarray(chan, np.int64))


def input_side(model: nn.Module, size: int | None) -> int:
    """The visualization side: `size` or the model's input size; FclensError if the model cannot
    take it (a forward fails or gives no pooled vector of the head's width)."""
    side = size or int(model.pretrained_cfg["input_size"][-1])
    dim = model.get_classifier().in_features
    try:
        with torch.inference_mode():
            dev = next(model.parameters()).device
            out = PixelFeatures(model).to(dev)(torch.full((1, 3, side, side), 0.5, device=dev))
        ok = tuple(out.shape) == (1, dim)
        why = f"pooled features {tuple(out.shape)}, expected (1, {dim})"
    except (RuntimeError, ValueError) as e:
        ok, why = False, str(e).splitlines()[0][:160]
    if not ok:
        raise FclensError(f"params.yaml visualize.size: {size} ({side}x{side} input) does not fit "
                          f"{type(model).__name__} ({why}); allowed: null (the model's input "
                          f"size {model.pretrained_cfg['input_size'][-1]}) or a side it accepts")
    return side


# ---------------------------------------------------------------- the two parameterizations

def _standardize(t: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit std per image (over all but the batch dim); complex tensors too."""
    dims = tuple(range(1, t.ndim))
    t = t - t.mean(dim=dims, keepdim=True)
    return t / (t.abs().pow(2).mean(dim=dims, keepdim=True).sqrt() + 1e-4)


def _to_pixels(spatial: torch.Tensor, color: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) decorrelated -> standardized, recorrelated, sigmoid: [0, 1] pixels."""
    return torch.sigmoid(torch.einsum("bchw,cd->bdhw", _standardize(spatial), color))


def _fourier_scale(side: int) -> torch.Tensor:
    """(side, side//2+1) 1/max(|f|, 1/side)^DECAY * side, for the rfft2 layout."""
    f = torch.sqrt(torch.fft.fftfreq(side)[:, None] ** 2 + torch.fft.rfftfreq(side)[None] ** 2)
    return side / torch.clamp(f, min=1.0 / side) ** DECAY


class _Image(nn.Module):
    """method's parameters for B images -> (B, 3, side, side) pixels in [0, 1]."""

    def __init__(self, method: str, b: int, side: int, magnitude: torch.Tensor | None,
                 gen: torch.Generator) -> None:
        super().__init__()
        self.method, self.side = method, side
        shape = (b, 3, side, side // 2 + 1)
        self.register_buffer("color", torch.from_numpy(color_sqrt()).float())
        if method == "maco":
            self.register_buffer("mag", magnitude.float())  # (3, side, side//2+1)
            self.phase = nn.Parameter(torch.randn(shape, generator=gen))
        else:
            self.register_buffer("scale", _fourier_scale(side))
            self.spec = nn.Parameter(torch.randn((*shape, 2), generator=gen))

    def forward(self) -> torch.Tensor:
        if self.method == "maco":
            spec = torch.polar(self.mag.expand_as(self.phase), _standardize(self.phase))
        else:
            spec = _standardize(torch.view_as_complex(self.spec)) * self.scale
        return _to_pixels(torch.fft.irfft2(spec, s=(self.side, self.side)), self.color)


def _augment(x: torch.Tensor, n_crops: int, out: int, gen: torch.Generator) -> torch.Tensor:
    """(B, 3, H, W) -> (n_crops * B, 3, out, out): random zoom in ZOOM, shift, reflection at the
    border, bilinear resampling, Gaussian noise (transformation robustness)."""
    n, dev = n_crops * x.shape[0], x.device
    zoom = ZOOM[0] + (ZOOM[1] - ZOOM[0]) * torch.rand(n, generator=gen)
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * ((1 - zoom)[:, None] + SHIFT)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = zoom
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(dev), [n, 3, out, out], align_corners=False)
    crops = F.grid_sample(x.repeat(n_crops, 1, 1, 1), grid, mode="bilinear",
                          padding_mode="reflection", align_corners=False)
    return crops + NOISE * torch.randn(crops.shape, generator=gen).to(dev)


@dataclass
class Visualized:
    images: np.ndarray  # (B, 3, H, W) float32 in [0, 1]
    transparency: np.ndarray | None  # (B, H, W) in [0, 1] (MACO), None otherwise
    target: np.ndarray  # (B,) final target values on the un-augmented images
    seconds: float
    start: np.ndarray  # (B, 3, H, W) the images before the first step (the control)


def visualize(model: nn.Module, targets: Targets, method: str, steps: int, lr: float,
              n_crops: int, side: int, magnitude: np.ndarray | None, seed: int) -> Visualized:
    """All rows of `targets` optimized together as one (B, 3, side, side) batch.

    magnitude: MACO's (3, side, side//2+1) spectrum (explain.spectrum), None for Fourier.
    """
    check_names([method], METHODS, "visualize.methods")
    if method == "maco" and (magnitude is None or magnitude.shape != (3, side, side // 2 + 1)):
        raise FclensError(f"maco: magnitude spectrum of shape "
                          f"{None if magnitude is None else magnitude.shape}; expected "
                          f"(3, {side}, {side // 2 + 1}) (explain.spectrum.resize_spectrum)")
    dev = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    net = PixelFeatures(model).to(dev).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    m = torch.from_numpy(targets.m).to(dev)  # (B, D)
    c = torch.from_numpy(targets.c).to(dev)  # (B,)
    b = len(m)
    img = _Image(method, b, side, None if magnitude is None else torch.from_numpy(magnitude),
                 gen).to(dev)
    opt = torch.optim.NAdam(img.parameters(), lr=lr)
    acc = torch.zeros(b, side, side, device=dev)
    with torch.no_grad():
        start = img().cpu().numpy()  # the seeded start: the control's images
    t0 = time.perf_counter()
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            x = img()  # (B, 3, H, W)
            x.retain_grad()
            pooled = net(_augment(x, n_crops, side, gen))  # (n_crops * B, D)
            score = (pooled * m.repeat(n_crops, 1)).sum(1) + c.repeat(n_crops)
            (-score.sum() / n_crops).backward()
            acc += x.grad.abs().sum(1)
            opt.step()
        with torch.no_grad():
            x = img()
            target = (net(x) * m).sum(1) + c
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    span = acc.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
    return Visualized(x.cpu().numpy(), (acc / span).cpu().numpy() if method == "maco" else None,
                      target.cpu().numpy(), seconds, start)


# ---------------------------------------------------------------- the numbers

def judge(model: nn.Module, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """images (N, 3, h, w) in [0, 1] -> softmax (N, C) of `model`, resized bilinearly to its
    input size first when h differs, then the model's normalization."""
    dev = next(model.parameters()).device
    side = int(model.pretrained_cfg["input_size"][-1])
    net = PixelFeatures(model).to(dev).eval()
    head = model.get_classifier()
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(images[i:i + batch]).float().to(dev)
            if x.shape[-1] != side or x.shape[-2] != side:
                x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
            out.append(head(net(x)).softmax(1).cpu())
    return torch.cat(out).numpy()


def rate(probs: np.ndarray, cls: np.ndarray) -> float:
    """Fraction of rows whose arg-max class is their class."""
    return float((probs.argmax(1) == cls).mean()) if len(cls) else float("nan")


def layer_activations(model: nn.Module, images: np.ndarray, layers: list[str], batch: int = 64
                      ) -> dict[str, np.ndarray]:
    """images (N, 3, H, W) in [0, 1] -> {layer: (N, K_layer)} spatially averaged activations of
    the named submodules, plus 'pooled' (the FC layer's input). Hooks are always removed."""
    dev = next(model.parameters()).device
    net = PixelFeatures(model).to(dev).eval()
    mods = dict(model.named_modules())
    if missing := [n for n in layers if n not in mods]:
        raise FclensError(f"{type(model).__name__}: no submodule {missing}; expected names of "
                          f"model.named_modules()")
    got: dict[str, list] = {n: [] for n in [*layers, "pooled"]}
    hooks = [mods[n].register_forward_hook(
        lambda _m, _i, o, n=n: got[n].append(o.float().mean(dim=(2, 3)).cpu())) for n in layers]
    try:
        with torch.inference_mode():
            for i in range(0, len(images), batch):
                got["pooled"].append(net(torch.from_numpy(images[i:i + batch]).float().to(dev)
                                         ).float().cpu())
    finally:
        for h in hooks:
            h.remove()
    return {n: torch.cat(v).numpy() for n, v in got.items()}


def path_layers(model: nn.Module) -> list[str]:
    """A few stages along the path to the pooled features: CIFAR ResNets conv1, layer1, layer2
    (layer3 averaged is 'pooled'); timm EfficientNets blocks 1, 3, 5 (+ pooled)."""
    names = dict(model.named_modules())
    if all(n in names for n in ("conv1", "layer1", "layer2")):
        return ["conv1", "layer1", "layer2"]
    if "blocks" in names:
        n = len(model.blocks)
        return [f"blocks.{i}" for i in sorted({1, n // 2, n - 2}) if 0 <= i < n]
    raise FclensError(f"{type(model).__name__}: no known stages (layer1/2 or blocks) for the "
                      f"path check")


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def plausibility(vis: np.ndarray, cls: np.ndarray, nat: np.ndarray, nat_cls: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """vis (B, D), nat (N, D): per row, the mean cosine to the natural images of its class and
    to those of the other classes. Returns (same (B,), other (B,))."""
    cos = _unit(vis) @ _unit(nat).T  # (B, N)
    mine = cls[:, None] == nat_cls[None]  # (B, N)
    same = (cos * mine).sum(1) / np.maximum(mine.sum(1), 1)
    other = (cos * ~mine).sum(1) / np.maximum((~mine).sum(1), 1)
    return np.where(mine.any(1), same, np.nan), np.where((~mine).any(1), other, np.nan)


def path_check(vis: dict[str, np.ndarray], nat: dict[str, np.ndarray], cls: np.ndarray,
               nat_cls: np.ndarray) -> dict:
    """Geirhos et al. (2023): per layer, the cosine of each visualization's activations to the
    mean activation of natural images of its class vs the other classes (mean over the
    other classes' means). Returns {layers, same_class, other_class} (lists over layers)."""
    layers = list(vis)
    have = np.unique(nat_cls)
    same, other = [], []
    for n in layers:
        means = np.stack([nat[n][nat_cls == k].mean(0) for k in have])  # (K, D)
        cos = _unit(vis[n]) @ _unit(means).T  # (B, K)
        mine = cls[:, None] == have[None]
        ok = mine.any(1)
        same.append(float(cos[mine].mean()) if ok.any() else float("nan"))
        other.append(float((cos * ~mine).sum(1).sum() / max((~mine).sum(), 1)))
    return {"layers": layers, "same_class": same, "other_class": other}


def path_check_natural(nat: dict[str, np.ndarray], nat_cls: np.ndarray) -> dict:
    """The path check's reference: the same cosines for the natural images themselves, each
    against its class's mean without itself (leave-one-out) and the other classes' means.
    Returns {same_class, other_class} (lists over the layers of `nat`); NaN where a class has
    a single image."""
    have, same, other = np.unique(nat_cls), [], []
    for n in nat:
        a = nat[n]
        sums = np.stack([a[nat_cls == k].sum(0) for k in have])  # (K, D)
        counts = np.array([(nat_cls == k).sum() for k in have])
        own = np.searchsorted(have, nat_cls)  # (N,)
        loo = (sums[own] - a) / np.maximum(counts[own] - 1, 1)[:, None]  # (N, D)
        s_cos = np.where(counts[own] > 1, (_unit(a) * _unit(loo)).sum(1), np.nan)
        cos = _unit(a) @ _unit(sums / counts[:, None]).T  # (N, K)
        mine = own[:, None] == np.arange(len(have))[None]
        o_cos = (cos * ~mine).sum(1) / max(len(have) - 1, 1)
        same.append(float(np.nanmean(s_cos)) if np.isfinite(s_cos).any() else float("nan"))
        other.append(float(o_cos.mean()) if len(have) > 1 else float("nan"))
    return {"same_class": same, "other_class": other}


def top_rows(features: np.ndarray, m: np.ndarray, c: np.ndarray, n: int) -> np.ndarray:
    """features (N, D) pooled features of training images; per target row (m (B, D), c (B,)),
    the n rows with the largest target value, best first. (B, n)"""
    scores = features @ m.T + c  # (N, B)
    top = np.argpartition(-scores, min(n, len(scores) - 1), axis=0)[:n]  # (n, B) unordered
    order = np.argsort(-np.take_along_axis(scores, top, 0), axis=0)
    return np.take_along_axis(top, order, 0).T
