"""Sparse heads: which features does each class need?

Every method gives each class c a feature set S_c; the sparse head keeps W[c, j] for j in S_c
only (`decompose.decomposed_logits`). One protocol serves every method:

- A validation part is carved once from the training split by seed; the rest is the fit part.
  Every selection and every refit uses the fit part; only elastic_net's rule for choosing its
  lambda reads the validation part; the test split is only ever scored.
- For each method and k of the grid: test accuracy without refit (the original weights, masked;
  elastic_net: glm-saga's own weights) and with refit (the masked head retrained on the fit part
  as in decompose, all masks in one batched training, deterministic by seed).

Per-class methods (k features per class, except where said):
- algorithm1: Algorithm 1 with k1 = k2 = k (`decompose.influential_indices`, counted batch by
  batch). At k = 5 on the same rows it is decompose's influential set.
- top_signed_weight: the k largest weights of the class's row. The blog's chain tree keeps the
  weights at or above the node mean on its '+' side, so every '+' chain node is a top-n set of
  the row (`trees.chain_rank`), and the ALD upper-tail probability is a decreasing function of
  the weight within a class, so ranking by it gives the same sets. These are one method, computed
  once; `equivalences` checks both on the weights at hand.
- top_abs_weight; top_contribution: the mean of x_j W[c, j] over the class's fit images.
- random: a seeded permutation per class and seed, its first k (nested in k); mean and std over
  seeds.
- elastic_net: the sparse decision layer of Wong, Santurkar and Madry (ICML 2021): glm-saga's
  elastic-net path on standardized fit features. Grid k takes the largest lambda whose mean
  non-zeros per class (NEC) is at least k. Sets vary by class; `nec` is the actual mean.
- csg: class-specific gates (Liang et al., ECCV 2020), head only: gates G = sigmoid(theta) in
  (0, 1)^{C x D} on the pooled features (gating a channel before or after the average pooling is
  the same), trained with the FC layer on the cached features, alternating batches between the
  standard path and the gated path (each image gated by its own class's row of G) with an L1
  penalty on G; thresholded to per-class sets. One run per penalty, all runs in one batched
  training; grid k takes the largest penalty whose mean open gates per class is at least k.

ALD's own cut: per class, the features whose upper-tail probability under the class's fitted ALD
is below p (one-sided), or whose two-sided tail probability 2 min(F, 1 - F) is (both signs).
Global pruning keeps a fraction of all C x D weights by |W|, by the two-sided ALD tail probability
(each class scaled by its own fit) or by |contribution|.

Memory: every pass over the features is a loop over `Features` batches of a re-iterable source
(a `tables.FeatureTable`, or a list `[features]`), except elastic_net, whose solver holds its
rows (N x D) and its gradient table (N x C) in memory: it runs on a seeded subsample above
`max_rows` and says so.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, fields

import numpy as np

from fclens.analysis import ald, trees
from fclens.analysis.ablate import TrainStats, jaccard
from fclens.analysis.decompose import (
    Source,
    TrainConfig,
    accuracies,
    batches,
    class_counts,
    index_mask,
    one_thread,
    top_k_indices,
    train_masked_heads,
    train_matrix,
)
from fclens.core.constants import GLOBAL_PRUNING, SPARSIFY_METHODS
from fclens.core.errors import FclensError
from fclens.core.tables import Features, Head, Influential

log = logging.getLogger(__name__)

DEFAULT_K_GRID = (1, 2, 3, 5, 8, 10, 15, 20, 30, 40, 64)
WHERE = "params.yaml sparsify"
EN_TOL, EN_LOOKBEHIND = 1e-4, 3  # glm-saga: stop a lambda after 3 epochs without 1e-4 progress
EN_SELECT_DROP = 0.05  # the paper's rule: sparsest lambda within 5 points of the best val acc
CSG_INIT_LOGIT = 2.0  # gates start open (sigmoid(2) = 0.88), as the paper's start at 1


@dataclass(frozen=True)
class ElasticNet:
    alpha: float  # L1 share of the penalty, in (0, 1]
    n_lambda: int  # lambdas, log-spaced from lambda_max (all zero) to epsilon * lambda_max
    epsilon: float
    epochs: int  # SAGA epochs per lambda at most
    lr: float
    batch_size: int
    max_rows: int  # more fit rows: a seeded subsample of this many


@dataclass(frozen=True)
class Csg:
    penalty_min: float  # L1 weight on the mean gate sum per class: one run per penalty,
    penalty_max: float  # n_penalties of them log-spaced from penalty_min to penalty_max
    n_penalties: int
    epochs: int
    lr: float
    batch_size: int
    threshold: float  # a gate above it puts the feature in the class's set

    @property
    def penalties(self) -> list[float]:
        return np.geomspace(self.penalty_min, self.penalty_max, self.n_penalties).tolist()


@dataclass(frozen=True)
class Settings:
    """The params `sparsify` section as plain values (the stage builds it), plus the seed."""

    methods: list[str]
    k_grid: list[int] | None  # None: DEFAULT_K_GRID, values above D dropped
    n_random: int
    val_fraction: float
    refit: TrainConfig
    elastic_net: ElasticNet
    csg: Csg
    ald_p: float
    global_fractions: list[float]
    seed: int
    global_methods: tuple[str, ...] = GLOBAL_PRUNING

    @classmethod
    def from_section(cls, sec, seed: int) -> Settings:
        """From the params `sparsify` section (any object with its attributes) and the seed."""
        def pick(kind, obj):
            return kind(**{f.name: getattr(obj, f.name) for f in fields(kind)})
        r = sec.refit
        return cls(list(sec.methods), None if sec.k_grid is None else list(sec.k_grid),
                   sec.n_random, sec.val_fraction,
                   TrainConfig(r.epochs, r.lr, r.batch_size, seed, r.optimizer),
                   pick(ElasticNet, sec.elastic_net), pick(Csg, sec.csg),
                   sec.ald_natural_cut_p, list(sec.global_fractions), seed)


# ---------------------------------------------------------------- checks

def resolve_grid(k_grid: list[int] | None, dim: int, model: str = "") -> list[int]:
    """The k grid for a feature dimension D: the default grid drops its values above D; in an
    explicit grid a value above D is an error."""
    if k_grid is None:
        return [k for k in DEFAULT_K_GRID if k <= dim]
    if len(k_grid) == 0:
        raise FclensError(f"{WHERE}.k_grid: empty; expected a list of k in 1..{dim}, or null "
                          f"for the default grid {list(DEFAULT_K_GRID)}")
    if bad := [k for k in k_grid if isinstance(k, bool) or not isinstance(k, int)
               or not 1 <= k <= dim]:
        raise FclensError(f"{WHERE}.k_grid: {bad} outside 1..{dim} (the feature dimension"
                          f"{' of ' + model if model else ''}); allowed: integers in 1..{dim}")
    return sorted(set(k_grid))


def check_settings(s: Settings) -> None:
    """What the science needs of the settings, each error naming its params key."""
    if bad := [m for m in s.methods if m not in SPARSIFY_METHODS]:
        raise FclensError(f"{WHERE}.methods: unknown method {bad[0]!r}; allowed: "
                          f"{', '.join(SPARSIFY_METHODS)}")
    if not 0 < s.elastic_net.alpha <= 1:
        raise FclensError(f"{WHERE}.elastic_net.alpha: {s.elastic_net.alpha!r}; allowed: a "
                          f"number in (0, 1] (1 = lasso)")
    if not 0 < s.val_fraction < 1:
        raise FclensError(f"{WHERE}.val_fraction: {s.val_fraction!r}; allowed: in (0, 1)")
    if bad := [f for f in s.global_fractions if not 0 < f <= 1]:
        raise FclensError(f"{WHERE}.global_fractions: {bad}; allowed: fractions in (0, 1]")


# ---------------------------------------------------------------- sources

@dataclass(frozen=True)
class Part:
    """The rows of `source` where `keep` (N,) is True, as a re-iterable source in file order."""

    source: Source
    keep: np.ndarray  # (N,) bool over the source's rows

    def __iter__(self) -> Iterator[Features]:
        start = 0
        for f in batches(self.source):
            sel = self.keep[start:start + len(f.labels)]
            start += len(f.labels)
            if sel.any():
                yield Features(f.x[sel], f.labels[sel], f.preds[sel])
        if start != len(self.keep):
            raise FclensError(f"the training features have {start} rows, the split was carved "
                              f"for {len(self.keep)}: the file changed during the stage")


def carve_validation(source: Source, fraction: float, seed: int) -> np.ndarray:
    """(N,) bool, True on the validation rows: round(fraction * N) rows drawn by seed."""
    n = sum(len(f.labels) for f in batches(source))
    n_val = round(fraction * n)
    if not 0 < n_val < n:
        raise FclensError(f"{WHERE}.val_fraction: {fraction} of {n} training rows leaves "
                          f"{n_val} for validation and {n - n_val} to fit; expected both >= 1")
    is_val = np.zeros(n, bool)
    is_val[np.random.default_rng(seed).permutation(n)[:n_val]] = True
    return is_val


def materialize(source: Source) -> Features:
    """All rows of a source in memory (elastic_net only: its solver needs them)."""
    parts = list(batches(source))
    if not parts:
        raise FclensError("no rows to fit; expected at least one training row")
    return Features(np.concatenate([f.x for f in parts]), np.concatenate([f.labels for f in parts]),
                    np.concatenate([f.preds for f in parts]))


def contribution(stats: TrainStats, w: np.ndarray) -> np.ndarray:
    """(C, D) mean x_j W[c, j] over the class's fit images (gradient x input of a linear head,
    as ablate's top_contribution)."""
    return stats.class_sums / np.maximum(stats.class_counts, 1)[:, None] * w


def algorithm1_masks(fit: Source, n_classes: int, ks: list[int]) -> dict[int, np.ndarray]:
    """k -> (C, D) Algorithm 1 with k1 = k2 = k: `decompose.class_counts` in one pass, then each
    class's top k by count, the same indices and tie rules as `decompose.influential_indices`."""
    counts = class_counts(fit, n_classes, ks)  # (K, C, D)
    return {k: index_mask(top_k_indices(counts[i], k), counts.shape[2]) for i, k in enumerate(ks)}


# ---------------------------------------------------------------- per-class rankings

def random_rankings(n_classes: int, dim: int, seed: int, n: int) -> np.ndarray:
    """(n, C, D): per seed s (seed + 1 + s, as ablate's controls) a permutation per class."""
    return np.stack([np.argsort(np.random.default_rng(seed + 1 + s).random((n_classes, dim)),
                                axis=1, kind="stable") for s in range(n)])


def ald_tails(w: np.ndarray, fit: dict) -> tuple[np.ndarray, np.ndarray]:
    """(C, D) log upper-tail and log two-sided tail probability of each weight under its class's
    ALD (`fit`: loc, scale, kappa per class); NaN where a class has no fit."""
    lf, ls = ald.ald_log_tails(w, fit["loc"], fit["scale"], fit["kappa"])
    return ls, np.minimum(np.log(2) + np.minimum(lf, ls), 0.0)


def equivalences(w: np.ndarray, ald_fit: dict, ks: list[int]) -> dict[str, bool]:
    """Do the chain tree's '+' nodes and the ALD upper-tail rank give top_signed_weight's sets?

    chain: every node on each class's '+' chain (split to the end, min_size 2) holds exactly the
    row's n largest weights, n its size, and `trees.chain_rank` is the weight order. ald: the
    first k features by upper-tail probability (ascending, ties to the lower index) are the top
    k weights, for every k of the grid, in every class that has a fit.
    """
    top = top_k_indices(w, w.shape[1])
    chain = bool(np.array_equal(trees.chain_rank(w), top))
    for c, row in enumerate(w):
        for node in trees.split_tree(row, "chain", 2, c):
            if node.chain_sign == "+":
                n = len(node.indices)
                chain &= set(node.indices.tolist()) == set(top[c, :n].tolist())
    log_sf, _ = ald_tails(w, ald_fit)
    fitted = ~np.isnan(log_sf).any(1)  # -inf: the end point of a boundary fit, ranked first
    by_tail = np.argsort(log_sf, axis=1, kind="stable")
    same = all(np.array_equal(index_mask(by_tail[fitted, :k], w.shape[1]),
                              index_mask(top[fitted, :k], w.shape[1])) for k in ks)
    return {"chain_tree_terminals": chain, "ald_upper_tail_rank": bool(same and fitted.any()),
            "ald_classes_checked": int(fitted.sum())}


def natural_cut(w: np.ndarray, ald_fit: dict, p: float) -> dict[str, np.ndarray]:
    """(C, D) masks: weights whose upper-tail (one_sided) or two-sided tail probability under
    the class's ALD is below p. A class without a fit keeps nothing."""
    log_sf, log_two = ald_tails(w, ald_fit)
    with np.errstate(invalid="ignore"):
        return {"one_sided": log_sf < math.log(p), "two_sided": log_two < math.log(p)}


def global_masks(scores: dict[str, np.ndarray], fractions: list[float]) -> dict[str, np.ndarray]:
    """name -> (F, C, D): the floor(f * C * D + 0.5) highest-scoring weights of the whole matrix
    for each fraction f (ties to the lower flat index), so the kept count is exact."""
    out = {}
    for name, s in scores.items():
        order = np.argsort(-np.nan_to_num(s, nan=-np.inf).ravel(), kind="stable")
        masks = np.zeros((len(fractions), s.size), bool)
        for i, f in enumerate(fractions):
            masks[i, order[:math.floor(f * s.size + 0.5)]] = True
        out[name] = masks.reshape(len(fractions), *s.shape)
    return out


# ---------------------------------------------------------------- elastic net (glm-saga)

@dataclass(frozen=True)
class _Batches:
    """glm-saga's loader: (X, y, row index) batches, reshuffled by a seeded generator each
    epoch (a DataLoader over a TensorDataset indexes row by row: ~5x slower here)."""

    x: object  # torch (N, D)
    y: object  # torch (N,)
    batch_size: int
    seed: int | None  # None: file order (the validation loader)
    _state: dict = field(default_factory=dict)

    def __iter__(self):
        import torch

        n = len(self.y)
        if self.seed is None:
            perm = torch.arange(n)
        else:
            g = self._state.setdefault("g", torch.Generator().manual_seed(self.seed))
            perm = torch.randperm(n, generator=g)
        for i in range(0, n, self.batch_size):
            j = perm[i:i + self.batch_size]
            yield self.x[j], self.y[j], j


class _LogLines(io.TextIOBase):
    """glm-saga prints one line per lambda: route them to the debug log."""

    def write(self, s: str) -> int:
        for line in s.splitlines():
            if line.strip():
                log.debug("glm-saga: %s", line)
        return len(s)


@dataclass(frozen=True)
class EnPath:
    lam: np.ndarray  # (L,) decreasing, the last 0
    w: np.ndarray  # (L, C, D) on the unstandardized features
    b: np.ndarray  # (L, C)
    val_acc: np.ndarray  # (L,)
    n_rows: int  # fit rows the path saw
    n_fit: int  # fit rows available

    @property
    def nec(self) -> np.ndarray:
        """(L,) mean non-zeros per class."""
        return (self.w != 0).sum(2).mean(1)

    def at_k(self, k: int) -> int | None:
        """Index of the largest lambda whose NEC is at least k (None: the path never gets
        there)."""
        hit = np.flatnonzero(self.nec >= k)
        return int(hit[0]) if len(hit) else None

    def selected(self) -> int:
        """The paper's rule: the sparsest lambda whose validation accuracy is within
        EN_SELECT_DROP (absolute) of the path's best; ties to the larger lambda."""
        ok = np.flatnonzero(self.val_acc >= np.nanmax(self.val_acc) - EN_SELECT_DROP)
        return int(ok[np.argmin(self.nec[ok])])  # the first minimum: the larger lambda


def elastic_net_path(fit: Features, val: Features, n_classes: int, cfg: ElasticNet, seed: int,
                     n_fit: int | None = None) -> EnPath:
    """glm-saga's regularization path on the standardized features; weights mapped back."""
    import torch
    from glm_saga.elasticnet import glm_saga, maximum_reg

    if not 0 < cfg.alpha <= 1:
        raise FclensError(f"{WHERE}.elastic_net.alpha: {cfg.alpha!r}; allowed: a number in "
                          f"(0, 1] (1 = lasso)")
    x = fit.x.astype(np.float64)
    mu, sd = x.mean(0), x.std(0)
    sd[sd == 0] = 1.0  # a dead (always-zero) channel stays zero, and gets weight zero
    xs = torch.from_numpy(((x - mu) / sd).astype(np.float32))
    ys = torch.from_numpy(fit.labels.astype(np.int64))
    xv = torch.from_numpy(((val.x - mu) / sd).astype(np.float32))
    yv = torch.from_numpy(val.labels.astype(np.int64))
    linear = torch.nn.Linear(x.shape[1], n_classes)
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()
    torch.manual_seed(seed)
    lam_max = maximum_reg(xs, ys, group=False)  # the smallest lambda of the all-zero solution
    with one_thread(), contextlib.redirect_stdout(_LogLines()), warnings.catch_warnings():
        # glm-saga calls softmax without dim (torch warns; dim 1 is what it means)
        warnings.filterwarnings("ignore", message="Implicit dimension choice")
        out = glm_saga(linear, _Batches(xs, ys, cfg.batch_size, seed), cfg.lr, cfg.epochs,
                       cfg.alpha, n_ex=len(ys), n_classes=n_classes, k=cfg.n_lambda,
                       epsilon=cfg.epsilon, tol=EN_TOL, lookbehind=EN_LOOKBEHIND, do_zero=True,
                       val_loader=_Batches(xv, yv, 8192, None),
                       metadata={"max_reg": {"nongrouped": lam_max}})
    path = out["path"]
    ws = np.stack([p["weight"].numpy().astype(np.float64) for p in path])  # (L, C, D) standardized
    bs = np.stack([p["bias"].numpy().astype(np.float64) for p in path])
    # x_std = (x - mu) / sd: W_std x_std + b = (W_std / sd) x + (b - W_std (mu / sd))
    w = ws / sd
    b = bs - ws @ (mu / sd)
    return EnPath(np.array([float(p["lam"]) for p in path]), w.astype(np.float32),
                  b.astype(np.float32), np.array([p["metrics"]["acc_val"] for p in path]),
                  len(ys), n_fit or len(ys))


def elastic_net_rows(is_fit: np.ndarray, max_rows: int, seed: int) -> np.ndarray:
    """(N,) bool: the fit rows elastic_net reads, a seeded subsample above max_rows."""
    rows = np.flatnonzero(is_fit)
    if len(rows) > max_rows:
        rows = np.random.default_rng(seed).choice(rows, max_rows, replace=False)
    keep = np.zeros(len(is_fit), bool)
    keep[rows] = True
    return keep


# ---------------------------------------------------------------- class-specific gates

def csg_gates(fit: Source, head: Head, cfg: Csg, seed: int) -> np.ndarray:
    """(P, C, D) gate values of one head-only CSG run per penalty, trained together.

    Each run has its own gates and its own copy of the FC layer (started from the original).
    Batches alternate: even steps the standard path (x -> FC), odd steps the gated path
    (x * G[y] -> FC, G[y] the image's own class's gates) plus penalty * mean_c sum_j G[c, j].
    Minibatches are drawn (seeded) from all fit rows, as in `train_masked_heads`.
    """
    import torch
    import torch.nn.functional as F

    p, c = cfg.n_penalties, head.n_classes
    g = torch.Generator().manual_seed(seed)
    theta = torch.full((p, *head.w.shape), CSG_INIT_LOGIT, requires_grad=True)
    w = torch.tensor(np.broadcast_to(head.w, (p, *head.w.shape)), dtype=torch.float32,
                     requires_grad=True)
    b = torch.tensor(np.broadcast_to(head.b, (p, c)), dtype=torch.float32, requires_grad=True)
    pen = torch.tensor(cfg.penalties, dtype=torch.float32)
    opt = torch.optim.Adam([theta, w, b], lr=cfg.lr)
    step = 0
    with contextlib.ExitStack() as stack, one_thread():
        x, y_np = train_matrix(fit, stack)  # (N, D) in memory or a memory map
        y = torch.from_numpy(y_np.astype(np.int64))
        for _ in range(cfg.epochs):
            perm = torch.randperm(len(y), generator=g)
            for i in range(0, len(y), cfg.batch_size):
                j = perm[i:i + cfg.batch_size]
                xb, yb = torch.from_numpy(np.asarray(x[j.numpy()], np.float32)), y[j]
                if step % 2 == 0:  # standard path
                    logits = torch.einsum("bd,pcd->pbc", xb, w) + b[:, None]
                    loss = F.cross_entropy(logits.reshape(-1, c), yb.repeat(p)) * p
                else:  # gated path; the runs' losses are summed (independent parameters)
                    gates = torch.sigmoid(theta)  # (P, C, D)
                    logits = torch.einsum("pbd,pcd->pbc", xb * gates[:, yb], w) + b[:, None]
                    loss = (F.cross_entropy(logits.reshape(-1, c), yb.repeat(p)) * p
                            + (pen * gates.sum(2).mean(1)).sum())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
    return torch.sigmoid(theta).detach().numpy()


# ---------------------------------------------------------------- the whole comparison

@dataclass
class Point:
    """One evaluated head: its mask's mean size per class (NEC) and union, and, once scored,
    its test accuracy without and with refit."""

    nec: float
    union: int
    nr: int  # index of its no-refit head in the bank
    rf: int  # index of its mask in the bank's refit batch
    acc: float = float("nan")
    acc_refit: float = float("nan")


class Bank:
    """Every set to evaluate: its no-refit head (all scored on test in one pass) and its mask
    (all refit in one batched training), each stored once however many methods ask for it."""

    def __init__(self, head: Head) -> None:
        self.head = head
        self.heads: list[tuple[np.ndarray, np.ndarray]] = [(head.w, head.b)]  # 0: dense
        self.masks: list[np.ndarray] = []
        self.points: list[Point] = []
        self._seen: dict[tuple[str, bytes], int] = {}
        self.dense_acc = float("nan")
        self.refit_heads: list[Head] = []  # after `score`, in the order of `masks`

    def _once(self, kind: str, mask: np.ndarray, add) -> int:
        key = (kind, np.packbits(mask).tobytes())
        if key not in self._seen:
            self._seen[key] = add()
        return self._seen[key]

    def _add_head(self, w: np.ndarray, b: np.ndarray) -> int:
        self.heads.append((w, b))
        return len(self.heads) - 1

    def _add_mask(self, mask: np.ndarray) -> int:
        self.masks.append(mask)
        return len(self.masks) - 1

    def add(self, mask: np.ndarray, own: tuple[np.ndarray, np.ndarray] | None = None) -> Point:
        """mask (C, D); own: the method's own no-refit weights (elastic_net), else the original
        weights masked."""
        nr = (self._add_head(*own) if own is not None else
              self._once("nr", mask, lambda: self._add_head(self.head.w * mask, self.head.b)))
        rf = self._once("rf", mask, lambda: self._add_mask(mask))
        p = Point(float(mask.sum(1).mean()), int(mask.any(0).sum()), nr, rf)
        self.points.append(p)
        return p

    def score(self, fit: Source, test: Source, cfg: TrainConfig) -> None:
        """Refit every mask on the fit part (one training), score every head on test."""
        self.refit_heads = train_masked_heads(fit, self.head, np.stack(self.masks), cfg)
        # one pass over test scores the no-refit and the refit heads together
        acc = accuracies(test, self.heads + [(h.w, h.b) for h in self.refit_heads])
        acc_nr, acc_rf = acc[:len(self.heads)], acc[len(self.heads):]
        self.dense_acc = acc_nr[0]
        for p in self.points:
            p.acc, p.acc_refit = acc_nr[p.nr], acc_rf[p.rf]


@dataclass(frozen=True)
class Result:
    metrics: dict
    rows: list[dict]  # the plot series, one row per (method, k)
    timing: dict  # seconds per part: metrics/timing, never in the science metrics


class _Clock:
    def __init__(self) -> None:
        self.t, self.laps = time.perf_counter(), {}

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[f"seconds_{name}"] = self.laps.get(f"seconds_{name}", 0.0) + now - self.t
        log.info("%s: %.1f s", name, now - self.t)
        self.t = now


def run(train: Source, test: Source, head: Head, ald_fit: dict, s: Settings,
        influential: Influential | None = None, model: str = "") -> Result:
    """Every method of `s.methods` over the k grid, the ALD natural cut and global pruning.

    `ald_fit`: loc, scale, kappa (C,) of each class's ALD (the fit_ald stage's table).
    `influential`: decompose's set, to report its Jaccard with algorithm1 at its k.
    """
    check_settings(s)
    clock = _Clock()
    c, d = head.w.shape
    ks = resolve_grid(s.k_grid, d, model)
    is_val = carve_validation(train, s.val_fraction, s.seed)
    fit = Part(train, ~is_val)
    stats = TrainStats.from_source(fit, c)
    alg1 = algorithm1_masks(fit, c, ks)
    contrib = contribution(stats, head.w)
    clock("scan")
    bank = Bank(head)
    by_weight = top_k_indices(head.w, d)  # top_signed_weight = chain terminals = ALD rank
    rankings = {"top_signed_weight": by_weight,
                "top_abs_weight": top_k_indices(np.abs(head.w), d),
                "top_contribution": top_k_indices(contrib, d)}
    points: dict[str, list[Point | None]] = {}
    for m in s.methods:
        if m == "algorithm1":
            points[m] = [bank.add(alg1[k]) for k in ks]
        elif m in rankings:
            points[m] = [bank.add(index_mask(rankings[m][:, :k], d)) for k in ks]
    rand = [[bank.add(index_mask(r[:, :k], d)) for k in ks]
            for r in random_rankings(c, d, s.seed, s.n_random)] if "random" in s.methods else []
    en = None
    if "elastic_net" in s.methods:
        rows = elastic_net_rows(~is_val, s.elastic_net.max_rows, s.seed)
        path = elastic_net_path(materialize(Part(train, rows)), materialize(Part(train, is_val)),
                                c, s.elastic_net, s.seed, int((~is_val).sum()))
        pts = {i: bank.add(path.w[i] != 0, (path.w[i], path.b[i]))
               for i in {path.at_k(k) for k in ks} | {path.selected()} if i is not None}
        points["elastic_net"] = [pts.get(path.at_k(k)) for k in ks]
        en = (path, pts[path.selected()])
        clock("elastic_net")
    csg = None
    if "csg" in s.methods:
        gates = csg_gates(fit, head, s.csg, s.seed) > s.csg.threshold  # (P, C, D)
        nec = gates.sum(2).mean(1)
        largest_first = np.argsort(-np.asarray(s.csg.penalties), kind="stable")
        pick = [next((i for i in largest_first if nec[i] >= k), None) for k in ks]
        points["csg"] = [None if i is None else bank.add(gates[i]) for i in pick]
        csg = (nec, [None if i is None else float(jaccard(gates[i], alg1[k]).mean())
                     for i, k in zip(pick, ks)])
        clock("csg")
    cuts = natural_cut(head.w, ald_fit, s.ald_p)
    cut_points = {}
    for name, mask in cuts.items():
        k_same = max(1, round(float(mask.sum(1).mean())))
        cut_points[name] = (bank.add(mask), bank.add(index_mask(by_weight[:, :k_same], d)),
                            bank.add(index_mask(rankings["top_abs_weight"][:, :k_same], d)),
                            k_same, mask.sum(1))
    _, log_two = ald_tails(head.w, ald_fit)
    scores = {"magnitude": np.abs(head.w), "ald_tail": -log_two, "contribution": np.abs(contrib)}
    glob = global_masks({g: scores[g] for g in s.global_methods}, s.global_fractions)
    glob_points = {g: [bank.add(m) for m in masks] for g, masks in glob.items()}
    dense = bank.add(np.ones_like(head.w, bool))  # the whole head refit: the refit reference
    clock("select")
    bank.score(fit, test, s.refit)
    clock("refit_and_test")
    methods = {m: _series(points[m], ks) if m != "random" else _random_series(rand, ks)
               for m in s.methods}
    for v in methods.values():
        v.update(_summary(v, bank.dense_acc))
    metrics = {
        "dense_acc": bank.dense_acc, "dense_refit_acc": dense.acc_refit, "n_classes": c,
        "feature_dim": d, "k_grid": ks,
        "split": {"seed": s.seed, "val_fraction": s.val_fraction, "n_fit": int((~is_val).sum()),
                  "n_val": int(is_val.sum())},
        "methods": methods,
        "best_method_at_k5": _best_at(methods, 5),
        "equivalences": equivalences(head.w, ald_fit, ks),
        "elastic_net": None if en is None else _elastic_summary(*en, s.elastic_net),
        "csg": {"jaccard_vs_algorithm1": None if csg is None else csg[1], "whole_network": None,
                "head_only": csg is not None, "threshold": s.csg.threshold,
                "penalties": list(s.csg.penalties),
                "nec_by_penalty": None if csg is None else csg[0].tolist()},
        "ald_natural_cut": {"p": s.ald_p, **{
            name: {"mean_k": cut.nec, "min_k": int(size.min()), "max_k": int(size.max()),
                   "acc": cut.acc, "acc_refit": cut.acc_refit, "union_size": cut.union,
                   "k_top_signed_same_k": k_same, "acc_top_signed_same_k": top.acc,
                   "acc_refit_top_signed_same_k": top.acc_refit,
                   "acc_top_abs_same_k": top_abs.acc, "acc_refit_top_abs_same_k": top_abs.acc_refit}
            for name, (cut, top, top_abs, k_same, size) in cut_points.items()}},
        "global": {g: {"fraction": [float(m.mean()) for m in glob[g]],
                       "acc": [p.acc for p in pts], "acc_refit": [p.acc_refit for p in pts]}
                   for g, pts in glob_points.items()},
        "refit": {"epochs": s.refit.epochs, "lr": s.refit.lr, "batch_size": s.refit.batch_size,
                  "optimizer": s.refit.optimizer, "n_heads": len(bank.masks)},
    }
    if influential is not None and influential.idx.shape[1] in ks:
        k = influential.idx.shape[1]
        metrics["algorithm1_vs_influential"] = {
            "k": k, "jaccard": float(jaccard(alg1[k], index_mask(influential.idx, d)).mean())}
    rows = [{"method": m, "k": k, "nec": v["nec"][i], "acc": v["acc"][i],
             "acc_refit": v["acc_refit"][i]} for m, v in methods.items() for i, k in enumerate(ks)]
    clock("summary")
    return Result(metrics, rows, {**clock.laps, "seconds": sum(clock.laps.values())})


def _series(pts: list[Point | None], ks: list[int]) -> dict:
    """The contract's lists over the grid; None where a method never reaches k."""
    def get(name: str) -> list:
        return [None if p is None else getattr(p, name) for p in pts]
    return {"k": ks, "acc": get("acc"), "acc_refit": get("acc_refit"), "nec": get("nec"),
            "union_size": get("union")}


def _random_series(seeds: list[list[Point]], ks: list[int]) -> dict:
    """Mean over seeds, and the std of the accuracies."""
    acc = np.array([[p.acc for p in pts] for pts in seeds])  # (S, K)
    ref = np.array([[p.acc_refit for p in pts] for pts in seeds])
    union = np.array([[p.union for p in pts] for pts in seeds], float)
    return {"k": ks, "acc": acc.mean(0).tolist(), "acc_refit": ref.mean(0).tolist(),
            "nec": [float(k) for k in ks], "union_size": union.mean(0).tolist(),
            "acc_std": acc.std(0).tolist(), "acc_refit_std": ref.std(0).tolist(),
            "n_seeds": len(seeds)}


def _summary(v: dict, dense: float) -> dict:
    """auc: mean refit accuracy over the grid (points a method never reaches left out);
    k_at_95: the NEC of the first grid point whose refit accuracy reaches 95% of dense."""
    acc = np.array([np.nan if a is None else a for a in v["acc_refit"]], float)
    hit = np.flatnonzero(acc >= 0.95 * dense)
    return {"auc": float(np.nanmean(acc)) if np.isfinite(acc).any() else None,
            "k_at_95": v["nec"][hit[0]] if len(hit) else None}


def _best_at(methods: dict, k: int) -> str | None:
    """The method with the highest refit accuracy at grid k (random excluded)."""
    cands = {m: v["acc_refit"][v["k"].index(k)] for m, v in methods.items()
             if m != "random" and k in v["k"]}
    cands = {m: a for m, a in cands.items() if a is not None}
    return max(cands, key=cands.get) if cands else None


def _elastic_summary(path: EnPath, sel: Point, cfg: ElasticNet) -> dict:
    i = path.selected()
    return {"selected_nec": sel.nec, "selected_acc": sel.acc,
            "selected_acc_refit": sel.acc_refit, "lambda": float(path.lam[i]),
            "selected_val_acc": float(path.val_acc[i]),
            "best_val_acc": float(np.nanmax(path.val_acc)), "select_within": EN_SELECT_DROP,
            "alpha": cfg.alpha,
            "n_lambda": cfg.n_lambda, "n_rows": path.n_rows, "n_fit_rows": path.n_fit,
            "subsampled": path.n_rows < path.n_fit, "max_rows": cfg.max_rows,
            "path": {"lambda": path.lam.tolist(), "nec": path.nec.tolist(),
                     "val_acc": path.val_acc.tolist()}}
