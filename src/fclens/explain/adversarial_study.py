"""The adversarial study of one model: PGD at every radius on the dense head and on each sparse
head, the stronger attack, the margin decomposition of every broken image, the transfer of the
dense head's adversarial images to the sparse heads (primitives: `explain.adversarial`).

Robust accuracy counts every image: one misclassified when clean is broken at any radius. Only
the images the head gets right are attacked. The margin figures are over the images the dense
head gets right and PGD breaks, per radius. Transfer rate: of the dense head's adversarial
images that break it, the share that the sparse head also misclassifies, among the images the
sparse head gets right when clean.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from fclens.core.errors import FclensError
from fclens.core.tables import Head
from fclens.explain.adversarial import check_eps, margin_stats, pgd, strong_attack
from fclens.explain.pixels import HeadNet

if TYPE_CHECKING:
    from torch import nn

    from fclens.core.params import Adversarial

log = logging.getLogger(__name__)
N_RANDOM = 5  # random sets per image for the share and hit controls
WHERE_N = "params.yaml adversarial.n_per_class"


@dataclass
class Attacked:
    adv: torch.Tensor  # (N, 3, H, W) the adversarial image (the clean one where not attacked)
    wrong: np.ndarray  # (N,) bool: misclassified at the end (clean mistakes included)


@dataclass
class Result:
    metrics: dict
    timing: dict
    examples: dict  # for the picture: images, adversarial images, terms, labels


def _batched_pgd(net: nn.Module, x: torch.Tensor, y: torch.Tensor, clean_ok: np.ndarray,
                 eps: float, s: Adversarial, seed: int) -> Attacked:
    adv, wrong = x.clone(), ~clean_ok.copy()
    idx = np.flatnonzero(clean_ok)
    e = eps / 255
    for i in range(0, len(idx), s.batch_size):
        j = torch.from_numpy(idx[i:i + s.batch_size])
        a, broken = pgd(net, x[j], y[j], e, s.steps, s.step_factor * e / s.steps, seed + i)
        adv[j] = a
        wrong[j.numpy()] = broken.cpu().numpy()
    return Attacked(adv, wrong)


def _predict(net: nn.Module, x: torch.Tensor, bs: int) -> tuple[np.ndarray, np.ndarray]:
    """(pred (N,), features (N, D)) under torch.inference_mode, in batches."""
    preds, feats = [], []
    with torch.inference_mode():
        for i in range(0, len(x), bs):
            h = net.features(x[i:i + bs])
            feats.append(h.cpu().numpy())
            preds.append((h @ net.w.T + net.b).argmax(1).cpu().numpy())
    return np.concatenate(preds), np.concatenate(feats)


def _mean(v: np.ndarray | None) -> float | None:
    return None if v is None or len(v) == 0 else float(np.mean(v))


def study(model: nn.Module, head: Head, x: torch.Tensor, y: np.ndarray, alg1: np.ndarray,
          terminals: np.ndarray, sparse: dict[str, tuple[np.ndarray, np.ndarray]],
          s: Adversarial, seed: int) -> Result:
    """x (N, 3, H, W) pixels in [0, 1]; y (N,) true classes; alg1, terminals (C, D) bool sets
    of each class; sparse: head name -> (w (C, D), b (C,)), the elastic net's as
    `elastic_net` (its support is the margin-share set)."""
    check_eps(s.eps)
    check_eps([s.strong_eps], "strong_eps")
    if len(x) == 0:
        raise FclensError(f"{WHERE_N}: no test image picked; expected at least one per class")
    t0, timing = time.perf_counter(), {}
    yt = torch.from_numpy(y.astype(np.int64)).to(x.device)
    dense = HeadNet(model, head.w, head.b).to(x.device).eval()
    pred0, h0 = _predict(dense, x, s.batch_size)
    ok = pred0 == y
    en = sparse.get("elastic_net")
    en_sets = None if en is None else en[0] != 0
    per_eps: dict[str, list] = {k: [] for k in (
        "acc", "n_broken", "k90_median", "margin_share_algorithm1",
        "margin_share_algorithm1_random", "margin_share_elastic_net",
        "margin_share_elastic_net_random", "terminal_in_k90_rate", "terminal_in_k90_rate_random")}
    dense_adv, examples = {}, {}
    show_at = s.eps[len(s.eps) // 2]
    for e in tqdm(s.eps, desc="pgd dense", leave=False):
        att = _batched_pgd(dense, x, yt, ok, e, s, seed)
        dense_adv[e] = att
        broke = ok & att.wrong
        pred, h = _predict(dense, att.adv[broke], s.batch_size) if broke.any() else (
            np.zeros(0, np.int64), np.zeros((0, head.dim), np.float32))
        m = margin_stats(head.w, h0[broke], h, y[broke], pred, alg1, terminals, en_sets,
                         N_RANDOM, seed)
        per_eps["acc"].append(float(1 - att.wrong.mean()))
        per_eps["n_broken"].append(int(broke.sum()))
        per_eps["k90_median"].append(float(np.median(m.k90)) if len(m.k90) else None)
        per_eps["margin_share_algorithm1"].append(_mean(m.share_alg1))
        per_eps["margin_share_algorithm1_random"].append(_mean(m.share_alg1_random))
        per_eps["margin_share_elastic_net"].append(_mean(m.share_en))
        per_eps["margin_share_elastic_net_random"].append(_mean(m.share_en_random))
        per_eps["terminal_in_k90_rate"].append(_mean(m.terminal_hit))
        per_eps["terminal_in_k90_rate_random"].append(_mean(m.terminal_hit_random))
        if e == show_at:
            examples = _examples(x, att.adv, broke, y, pred, m.c, m.k90, s.n_examples, e)
            examples["alg1"] = alg1[examples["y"]]
    timing["seconds_pgd_dense"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    strong = _strong(dense, x, yt, ok, dense_adv.get(s.strong_eps), s, seed)
    timing["seconds_strong"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    heads = {}
    for name, (w, b) in sparse.items():
        net = HeadNet(model, w, b).to(x.device).eval()
        pred_s, _ = _predict(net, x, s.batch_size)
        ok_s = pred_s == y
        acc, transfer = [], []
        for e in tqdm(s.eps, desc=f"pgd {name}", leave=False):
            acc.append(float(1 - _batched_pgd(net, x, yt, ok_s, e, s, seed).wrong.mean()))
            moved = ok & dense_adv[e].wrong & ok_s  # dense broken, sparse right when clean
            p_t, _ = _predict(net, dense_adv[e].adv[moved], s.batch_size) if moved.any() else (
                np.zeros(0, np.int64), None)
            transfer.append(float(np.mean(p_t != y[moved])) if moved.any() else None)
        heads[name] = {"clean_acc": float(ok_s.mean()), "acc": acc, "transfer_rate": transfer,
                       "nec": float((w != 0).sum(1).mean())}
    timing["seconds_sparse_heads"] = time.perf_counter() - t1
    timing["seconds"] = time.perf_counter() - t0
    metrics = {
        "eps": list(s.eps), "eps_units": "1/255", "n_images": len(x),
        "n_classes": head.n_classes, "feature_dim": head.dim,
        "clean_acc": float(ok.mean()), **per_eps, **strong, "sparse_heads": heads,
        "algorithm1_size": int(alg1.sum(1).max()),
        "attack": {"name": "pgd_linf", "steps": s.steps, "step_factor": s.step_factor,
                   "random_start": True, "early_stop": True, "seed": seed,
                   "n_per_class": s.n_per_class, "space": "pixels in [0, 1]"},
        "examples_eps": show_at,
    }
    return Result(metrics, timing, examples)


def _strong(dense: nn.Module, x: torch.Tensor, yt: torch.Tensor, ok: np.ndarray,
            att: Attacked | None, s: Adversarial, seed: int) -> dict:
    """The stronger attack at strong_eps on the images PGD left right (PGD at strong_eps too,
    when it is not one of the radii)."""
    if att is None:
        att = _batched_pgd(dense, x, yt, ok, s.strong_eps, s, seed)
    left = np.flatnonzero(~att.wrong)
    wrong = att.wrong.copy()
    for i in range(0, len(left), s.batch_size):
        j = torch.from_numpy(left[i:i + s.batch_size])
        _, broken = strong_attack(dense, x[j], yt[j], s.strong_eps / 255, s.strong_steps)
        wrong[j.numpy()] = broken.cpu().numpy()
    return {"acc_strong": float(1 - wrong.mean()),
            "strong": {"attack": "foolbox LInfFMNAttack", "eps": s.strong_eps,
                       "steps": s.strong_steps, "acc_pgd": float(1 - att.wrong.mean()),
                       "n_attacked": int(len(left)),
                       "n_broken_extra": int(wrong.sum() - att.wrong.sum())}}


def _examples(x: torch.Tensor, adv: torch.Tensor, broke: np.ndarray, y: np.ndarray,
              pred: np.ndarray, c: np.ndarray, k90: np.ndarray, n: int, eps: float) -> dict:
    """The first broken image of each class in turn, up to n: clean, adversarial, terms."""
    rows = np.flatnonzero(broke)
    picked, seen = [], set()
    for r, cls in enumerate(y[rows]):
        if cls not in seen:
            picked.append(r)
            seen.add(cls)
        if len(picked) == n:
            break
    p = np.asarray(picked, dtype=np.int64)
    to_img = lambda t: t.permute(0, 2, 3, 1).cpu().numpy()  # noqa: E731 (B, H, W, 3)
    return {"clean": to_img(x[rows[p]]), "adv": to_img(adv[rows[p]]), "y": y[rows[p]],
            "t": pred[p], "c": c[p], "k90": k90[p], "eps": eps}
