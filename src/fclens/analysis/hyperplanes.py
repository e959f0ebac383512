"""Fleuret's first picture: what the hidden units of a tiny MLP do while it learns.

A 2 -> H -> 2 MLP with one ReLU hidden layer cuts the plane with H lines, one per hidden unit
j: {x : w_j . x + b_j = 0}, where that unit switches on. The network is linear on every cell of
that arrangement, so its decision boundary is a polyline made of pieces of cells, and watching
the lines move during training shows how the boundary is built. The data is two interleaved
half moons (seeded numpy), trained full-batch with Adam in numpy, so a seed gives the same
pictures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fclens.core.errors import FclensError

N_HIDDEN = 20
N_SNAPSHOTS = 8
MOONS_NOISE = 0.15  # std of the Gaussian jitter: the moons overlap a little, like real data


def two_moons(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n points (n // 2 per class, the odd one to class 1) of two interleaved half circles,
    centred and scaled to about [-1, 1]^2: x (n, 2) float64, y (n,) int64."""
    if n < 4:
        raise FclensError(f"hyperplanes.n_points: {n}; expected at least 4 (2 per class)")
    rng = np.random.default_rng(seed)
    n0 = n // 2
    t = rng.uniform(0, np.pi, n)  # (n,) angle along each half circle
    upper = np.stack([np.cos(t[:n0]), np.sin(t[:n0])], 1)  # (n0, 2)
    lower = np.stack([1 - np.cos(t[n0:]), 0.5 - np.sin(t[n0:])], 1)  # (n - n0, 2)
    x = np.concatenate([upper, lower]) + rng.normal(0, MOONS_NOISE, (n, 2))
    x = (x - [0.5, 0.25]) / 1.25  # centre the pair of moons on the origin
    y = np.r_[np.zeros(n0, np.int64), np.ones(n - n0, np.int64)]
    return x, y


def snapshot_iterations(steps: int, n: int = N_SNAPSHOTS) -> np.ndarray:
    """n distinct iterations from 0 (the initialisation) to `steps`, log-spaced: the lines move
    most at the start. Falls back to even spacing where rounding would repeat an iteration."""
    if steps < n - 1:
        raise FclensError(f"hyperplanes.steps: {steps}; expected at least {n - 1} for {n} "
                          f"distinct snapshots")
    it = np.unique(np.round(np.geomspace(1, steps + 1, n)).astype(int) - 1)
    if len(it) < n:
        it = np.round(np.linspace(0, steps, n)).astype(int)
    return it


@dataclass(frozen=True)
class Snapshot:
    iteration: int  # parameter updates done (0 = initialisation)
    w1: np.ndarray  # (H, 2) hidden units' normals
    b1: np.ndarray  # (H,)
    w2: np.ndarray  # (2, H)
    b2: np.ndarray  # (2,)
    train_acc: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        """x (N, 2) -> predicted class (N,)."""
        h = np.maximum(x @ self.w1.T + self.b1, 0)  # (N, H)
        return (h @ self.w2.T + self.b2).argmax(1)


def _adam(params: list[np.ndarray], lr: float, b1: float = 0.9, b2: float = 0.999,
          eps: float = 1e-8):
    """Adam (Kingma & Ba) on numpy arrays, updated in place: step(grads)."""
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    t = 0

    def step(grads: list[np.ndarray]) -> None:
        nonlocal t
        t += 1
        for p, g, mi, vi in zip(params, grads, m, v):
            mi *= b1
            mi += (1 - b1) * g
            vi *= b2
            vi += (1 - b2) * g * g
            p -= lr * (mi / (1 - b1**t)) / (np.sqrt(vi / (1 - b2**t)) + eps)

    return step


def train_mlp(x: np.ndarray, y: np.ndarray, steps: int, lr: float, seed: int,
              n_hidden: int = N_HIDDEN) -> list[Snapshot]:
    """Full-batch Adam on the mean cross-entropy, float64 numpy with the gradients written out
    (a torch loop spends ~40 ms a step on thread overhead for these 200 x 20 matrices); the
    parameters at each `snapshot_iterations`. Deterministic given the seed (the initialisation,
    torch's default U(+-1/sqrt(fan_in)); full batch, so no data order)."""
    if not (np.isfinite(lr) and lr > 0):
        raise FclensError(f"hyperplanes.lr: {lr}; expected a finite number > 0")
    keep = set(snapshot_iterations(steps).tolist())
    rng = np.random.default_rng(seed)
    a1, a2 = 1 / np.sqrt(2), 1 / np.sqrt(n_hidden)
    w1, b1 = rng.uniform(-a1, a1, (n_hidden, 2)), rng.uniform(-a1, a1, n_hidden)
    w2, b2 = rng.uniform(-a2, a2, (2, n_hidden)), rng.uniform(-a2, a2, 2)
    params = [w1, b1, w2, b2]
    step = _adam(params, lr)
    snaps = []
    for it in range(steps + 1):
        logits, grads = mlp_grads(params, x, y)
        if it in keep:  # the parameters that produced these logits: after `it` updates
            acc = float((logits.argmax(1) == y).mean())
            snaps.append(Snapshot(it, *(p.copy() for p in params), acc))
        if it < steps:
            step(grads)
    return snaps


def mlp_grads(params: list[np.ndarray], x: np.ndarray, y: np.ndarray
              ) -> tuple[np.ndarray, list[np.ndarray]]:
    """[w1 (H, 2), b1 (H,), w2 (C, H), b2 (C,)], x (N, 2), y (N,) -> logits (N, C) and the
    gradients of the mean cross-entropy with respect to each parameter."""
    w1, b1, w2, b2 = params
    z = x @ w1.T + b1  # (N, H)
    h = np.maximum(z, 0)  # (N, H)
    logits = h @ w2.T + b2  # (N, C)
    e = np.exp(logits - logits.max(1, keepdims=True))  # (N, C)
    d_logits = e / e.sum(1, keepdims=True)  # (N, C): softmax - onehot, over N
    d_logits[np.arange(len(y)), y] -= 1
    d_logits /= len(x)
    d_z = (d_logits @ w2) * (z > 0)  # (N, H)
    return logits, [d_z.T @ x, d_z.sum(0), d_logits.T @ h, d_logits.sum(0)]


@dataclass(frozen=True)
class HyperplaneRun:
    x: np.ndarray  # (N, 2)
    y: np.ndarray  # (N,)
    snapshots: list[Snapshot]
    regions: np.ndarray  # (S, G, G) predicted class on the view box, row 0 at the bottom
    extent: tuple[float, float, float, float]  # the view box: x0, x1, y0, y1
    metrics: dict  # metrics/hyperplanes.json


def hyperplanes(n_points: int, steps: int, lr: float, seed: int, grid: int = 150
                ) -> HyperplaneRun:
    """Train on two moons; the snapshots, each one's decision regions on a grid x grid raster
    (the picture's background) and the metrics (train accuracy at each snapshot)."""
    x, y = two_moons(n_points, seed)
    snaps = train_mlp(x, y, steps, lr, seed)
    lo, hi = x.min(0) - 0.3, x.max(0) + 0.3  # (2,), (2,): the view box
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], grid), np.linspace(lo[1], hi[1], grid))
    pts = np.stack([gx.ravel(), gy.ravel()], 1)  # (grid*grid, 2), row-major from the bottom
    regions = np.stack([s.predict(pts).reshape(grid, grid) for s in snaps])  # (S, grid, grid)
    metrics = {"n_points": n_points, "steps": steps, "n_hidden": int(snaps[0].w1.shape[0]),
               "iterations": [s.iteration for s in snaps],
               "train_acc": [round(s.train_acc, 4) for s in snaps],
               "final_train_acc": round(snaps[-1].train_acc, 4)}
    extent = (float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1]))
    return HyperplaneRun(x, y, snaps, regions, extent, metrics)
