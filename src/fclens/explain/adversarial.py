"""Adversarial samples (the lecture's sixth way of looking at a network), read through the last
layer.

Attack: L-inf PGD in pixel space [0, 1] (Madry et al. 2018): a uniform random start in the
eps-ball, then `steps` signed-gradient steps of size `step_factor * eps / steps` on the
cross-entropy of the true class, each projected back onto the eps-ball and [0, 1]. An image counts
as broken as soon as an iterate is misclassified; that iterate is kept and the image leaves the
batch (early stop: robust accuracy is unchanged, since any misclassified point inside the ball
breaks the image). captum.robust.PGD is the same update without the early stop; it runs every
step on every image: ResNet56 at 1000 images and 5 radii is 100 full passes, 3.3 ms per image
and step on a 2-core AMD EPYC (326 s), against ~40% of that here. tests/test_adversarial.py
checks that this loop, early stop and random start off, returns captum's images.
A stronger attack (foolbox's L-inf FMN, Pintor et al. 2021, a minimum-norm attack with its own
step schedule) then runs at `strong_eps` on what PGD left correct; `acc_strong` counts an image
as robust only if both fail. torchattacks (APGD, AutoAttack) pins requests~=2.25, which breaks
`pip check` beside dvc; captum has nothing stronger than PGD.

The margin decomposition is exact because the head is linear. For a broken image with true
class y and adversarial class t, with h the pooled penultimate features:
    delta margin = [(W_y - W_t) . h(x_adv)] - [(W_y - W_t) . h(x)] = sum_i c_i,
    c_i = (W[y, i] - W[t, i]) * (h_i(x_adv) - h_i(x))         (the biases cancel)
k90 is the fewest features whose c_i, most negative first, reach 90% of the sum. The share of
the sum carried by a feature set S is sum_{i in S} c_i / sum_i c_i; its control is exact: a
random set of S's size carries |S| / D of the sum in expectation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fclens.core.errors import FclensError

WHERE = "params.yaml adversarial"


def check_eps(eps: list[float], key: str = "eps") -> None:
    """Radii in units of 1/255: positive and inside the pixel range."""
    if bad := [e for e in eps if not (0 < e <= 255) or not math.isfinite(e)]:
        raise FclensError(f"{WHERE}.{key}: {bad} (units of 1/255); expected values in (0, 255]")


def pgd(net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
        step_size: float, seed: int, random_start: bool = True, early_stop: bool = True
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_adv (N, 3, H, W) in the eps-ball around x and in [0, 1], broken (N,) bool). eps and
    step_size in pixel units ([0, 1] scale)."""
    g = torch.Generator().manual_seed(seed)  # on the CPU: the same start on any device
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    adv = x.clone()
    if random_start:
        adv = x + (torch.rand(x.shape, generator=g).to(x.device) * 2 - 1) * eps
        adv = torch.min(torch.max(adv, lo), hi)
    broken = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    active = torch.arange(len(x), device=x.device)
    for step in range(steps + 1):
        xa = adv[active].detach().requires_grad_(True)
        with torch.enable_grad():
            logits = net(xa)
            wrong = logits.argmax(1) != y[active]
            if early_stop:
                broken[active[wrong]] = True
                keep = ~wrong
            else:
                keep = torch.ones_like(wrong)
            if step == steps or not keep.any():
                if not early_stop:
                    broken[active] = wrong
                break
            grad, = torch.autograd.grad(F.cross_entropy(logits, y[active], reduction="sum"), xa)
        idx = active[keep]
        moved = xa.detach()[keep] + step_size * grad[keep].sign()
        adv[idx] = torch.min(torch.max(moved, lo[idx]), hi[idx])
        active = idx
    return adv, broken


def strong_attack(net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """foolbox's L-inf FMN at radius eps: (x_adv clipped to the ball, broken (N,) bool)."""
    if len(x) == 0:
        return x.clone(), torch.zeros(0, dtype=torch.bool, device=x.device)
    import foolbox as fb

    fmodel = fb.PyTorchModel(net.eval(), bounds=(0, 1), device=x.device)
    _, clipped, success = fb.attacks.LInfFMNAttack(steps=steps)(fmodel, x, y, epsilons=[eps])
    with torch.inference_mode():
        broken = net(clipped[0]).argmax(1) != y  # re-checked on our side of the wrapper
    return clipped[0].detach(), broken & success[0]


# ---------------------------------------------------------------- the last layer's margin

def margin_terms(w: np.ndarray, h: np.ndarray, h_adv: np.ndarray, y: np.ndarray, t: np.ndarray
                 ) -> np.ndarray:
    """(N, D) c_i = (W[y, i] - W[t, i]) * (h_adv_i - h_i); row sums = the margin change."""
    return (w[y] - w[t]) * (h_adv - h)


def k_reach(c: np.ndarray, frac: float = 0.9) -> np.ndarray:
    """(N,) the fewest terms, most negative first, whose sum reaches `frac` of the row's total
    (a negative total: the margin fell). Rows with a non-negative total get D."""
    order = np.sort(c, axis=1)  # most negative first
    cum = np.cumsum(order, axis=1)
    total = c.sum(1, keepdims=True)
    hit = cum <= frac * total  # (N, D)
    k = np.where(hit.any(1), hit.argmax(1) + 1, c.shape[1])
    return np.where(total[:, 0] < 0, k, c.shape[1])


def share(c: np.ndarray, sets: np.ndarray) -> np.ndarray:
    """(N,) sum of c over each row's set (N, D) bool, over the row's total."""
    return (c * sets).sum(1) / c.sum(1)


def hits_top(c: np.ndarray, k: np.ndarray, sets: np.ndarray) -> np.ndarray:
    """(N,) does each row's set meet its k most negative terms?"""
    rank = c.argsort(1, kind="stable").argsort(1, kind="stable")  # 0 = most negative
    return ((rank < k[:, None]) & sets).any(1)


def p_random_hit(k: np.ndarray, size: np.ndarray, dim: int) -> np.ndarray:
    """(N,) the chance that a random set of `size` features meets k given ones (exact)."""
    return 1 - np.array([math.comb(dim - int(a), int(s)) / math.comb(dim, int(s))
                         for a, s in zip(k, size)])


@dataclass
class MarginStats:
    k90: np.ndarray  # (N,) per broken image
    share_alg1: np.ndarray  # (N,) share carried by the true class's Algorithm-1 set
    share_alg1_random: np.ndarray  # (N,) the expected share of a random set of its size
    share_en: np.ndarray | None  # (N,) by the true class's elastic-net support, or None
    share_en_random: np.ndarray | None
    terminal_hit: np.ndarray  # (N,) bool: a terminal+ feature among the top-k90
    terminal_hit_random: np.ndarray  # (N,) chance of that for a random set of its size
    c: np.ndarray  # (N, D) the terms


def margin_stats(w: np.ndarray, h: np.ndarray, h_adv: np.ndarray, y: np.ndarray, t: np.ndarray,
                 alg1: np.ndarray, terminals: np.ndarray, en: np.ndarray | None) -> MarginStats:
    """alg1, terminals, en: (C, D) bool sets per class (en: None without sparse heads). The
    controls are exact: a share is linear in the set's indicator, so a uniformly random set of
    size s carries s / D of any row's total in expectation; the hit chance is combinatorial."""
    c = margin_terms(w, h, h_adv, y, t)
    d = w.shape[1]
    k90 = k_reach(c)

    def with_control(sets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return share(c, sets[y]), sets[y].sum(1) / d

    a, a_r = with_control(alg1)
    e, e_r = with_control(en) if en is not None else (None, None)
    return MarginStats(k90, a, a_r, e, e_r, hits_top(c, k90, terminals[y]),
                       p_random_hit(k90, terminals[y].sum(1), d), c)
