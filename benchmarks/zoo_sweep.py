"""Does fclens handle every timm classifier head? One model per timm family, random weights.

A family is a module under `timm.models` (timm's registry maps each model name to it). Each
family contributes its smallest registered classifier: fewest parameters, counted on the `meta`
device (no memory, no init cost), among its models whose default config has classes (encoders
with num_classes=0 have no classifier and are listed as skipped). Each chosen model then goes
through what the pipeline does to a `models:` entry:

1. weights: `extract.fc_head` (the classifier as W (C, D), b, for every head type);
2. features: `extract.extract` on 8 random uint8 images at the model's own input size, with a
   check that features @ W.T + b reproduces the model's logits (relative error < LOGIT_RTOL);
3. ALD: `ald.compare_families` and `ald.summary`, the code stages/fit_ald.py runs.

Random weights would leave a BatchNorm-folded head with identity statistics and some timm heads
at their zero init (nothing to fit, nothing to check), so the classifier's own BatchNorms get
seeded random statistics and an all-zero classifier weight is redrawn (the model is listed in
`zero_init_heads_redrawn`). Nothing else in the model is touched.

A failure is a FclensError (recorded with its message) or a timeout; any other exception is a
bug, recorded as `BUG <type>: <message>` and listed in `bugs`. The result is a count, not a
timing: run on any machine. Writes metrics/bench/zoo.json (keeps the no-op `dvc repro` figure of
`--dag`, a separate run, when the file has it).

    TQDM_DISABLE=1 python benchmarks/zoo_sweep.py       # all families (~10 min on 1 thread)
    python benchmarks/zoo_sweep.py --families dpn levit # a few, printed only
    python benchmarks/zoo_sweep.py --dag 20             # DAG with 20 weight-only models (~1 h)
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import timm
import torch
from timm.models import _registry
from torch import nn

from _common import OUT, machine
from fclens.analysis import ald
from fclens.core.errors import FclensError
from fclens.core.io import write_json
from fclens.core.params import Extract
from fclens.extract.loop import extract
from fclens.models.heads import describe, linear_head
from fclens.models.inputs import uint8_batches

log = logging.getLogger("zoo")
N_IMAGES = 8
LOGIT_RTOL = 1e-3  # float32 forward vs float64 FC: ~1e-6 relative; a wrong map is off by ~1
DAG_KEYS = ("noop_repro_", "dag_")  # written by --dag (zoo_dag.py), kept by the sweep


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def n_params_meta(name: str) -> int:
    """Parameter count of `name` built on the meta device (shapes only, no memory)."""
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = timm.create_model(name, pretrained=False)
    return sum(p.numel() for p in model.parameters())


def smallest_classifiers(families: list[str] | None) -> tuple[dict[str, tuple[str, int]],
                                                             dict[str, str]]:
    """family -> (smallest classifier, its parameter count); family -> why skipped."""
    deprecated = set(_registry.get_deprecated_models())
    chosen, skipped = {}, {}
    for fam in families or timm.list_modules():
        names = [n for n in timm.list_models(module=fam) if n not in deprecated]
        classifiers = [n for n in names
                       if (timm.models.get_pretrained_cfg_value(n, "num_classes") or 0) > 0]
        if not classifiers:
            skipped[fam] = f"no classifier among its {len(names)} models (num_classes=0)"
            continue
        sizes = {}
        for n in classifiers:
            try:
                sizes[n] = n_params_meta(n)
            except Exception as e:  # a model that cannot even be built on meta is not a candidate
                log.warning("%s: meta build failed (%s: %s)", n, type(e).__name__, e)
        if not sizes:
            skipped[fam] = "no model builds on the meta device"
            continue
        best = min(sizes, key=lambda n: (sizes[n], n))
        chosen[fam] = (best, sizes[best])
    return chosen, skipped


def _head_modules(model: nn.Module) -> list[nn.Module]:
    clf = model.get_classifier()
    mods = list(clf) if isinstance(clf, (tuple, list)) else [clf]
    return [m for m in [*mods, getattr(model, "head", None)] if isinstance(m, nn.Module)]


@torch.no_grad()
def randomize_head(model: nn.Module, g: torch.Generator) -> bool:
    """Seeded random statistics for the classifier's BatchNorms (so folding them is tested);
    redraw all-zero classifier weights (timm's zero init). True if a weight was redrawn."""
    redrawn = False
    for head in _head_modules(model):
        for m in head.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
            if isinstance(m, (nn.Linear, nn.Conv2d)) and not m.weight.any():
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.02)
                redrawn = True
    return redrawn


class _Capture:
    """A FeatureWriter stand-in for extract(): keeps the features in memory."""

    def __init__(self) -> None:
        self.feats: list[np.ndarray] = []

    def write(self, idx, labels, preds, logit_true, feats) -> None:
        self.feats.append(np.asarray(feats, np.float64))


def check_model(name: str, seed: int = 0) -> dict:
    """Weights, features and ALD of one random-weight model; FclensError on any failure."""
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = timm.create_model(name, pretrained=False).eval()
    redrawn = randomize_head(model, torch.Generator().manual_seed(seed))
    fc = linear_head(model)
    head = linear_head(model).to_head([str(i) for i in range(fc.out_features)])  # (C, D)
    _, h, w = model.pretrained_cfg["input_size"]
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (N_IMAGES, h, w, 3), dtype=np.uint8)
    labels = rng.integers(0, fc.out_features, N_IMAGES)
    cap = _Capture()
    r = extract(model, uint8_batches(images, labels, N_IMAGES),
                Extract(batch_size=N_IMAGES, num_threads=1), cap, desc=name)
    feats = np.concatenate(cap.feats)  # (N, D)
    scale = np.abs(feats @ head.w.astype(np.float64).T + head.b).max()
    rel = r.logit_max_abs_err / max(scale, 1e-12)
    if not rel < LOGIT_RTOL:
        raise FclensError(f"{name}: features @ W.T + b differs from the logits by {rel:.2g} "
                          f"(relative) for classifier {fc.kind}; expected < {LOGIT_RTOL}")
    s = ald.summary(ald.compare_families(head.w))
    return {"head": fc.kind, "n_classes": fc.out_features, "feature_dim": fc.in_features,
            "logit_rel_err": float(rel), "zero_init_head_redrawn": redrawn,
            "ald_n_degenerate": s["n_degenerate"]}


def sweep(families: list[str] | None, time_limit: int) -> dict:
    t0 = time.perf_counter()
    chosen, skipped = smallest_classifiers(families)
    log.info("%d families, %d skipped; picked in %.0f s", len(chosen), len(skipped),
             time.perf_counter() - t0)
    models, failures, bugs, head_types = {}, {}, [], Counter()
    signal.signal(signal.SIGALRM, _alarm)
    for fam, (name, n_params) in sorted(chosen.items()):
        t = time.perf_counter()
        row = {"model": name, "params": n_params}
        try:
            signal.alarm(time_limit)
            row.update(check_model(name))
        except FclensError as e:
            failures[name] = str(e)
        except _Timeout:
            failures[name] = f"timeout: over {time_limit} s"
        except Exception as e:  # a bug to fix: recorded as one, the sweep goes on
            failures[name] = f"BUG {type(e).__name__}: {str(e)[:300]}"
            bugs.append(name)
            log.exception("%s", name)
        finally:
            signal.alarm(0)
        row.update(ok=name not in failures, seconds=round(time.perf_counter() - t, 1))
        if "head" not in row:  # failed: the type get_classifier() returns
            with torch.device("meta"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row["head"] = describe(timm.create_model(name).get_classifier())
        head_types[row["head"]] += 1
        models[fam] = row
        log.info("%-28s %-40s %s", fam, name, "ok" if row["ok"] else failures[name][:120])
    n_ok = sum(r["ok"] for r in models.values())
    return {"n_models": len(models), "n_ok": n_ok, "ok_fraction": n_ok / max(len(models), 1),
            "failures": failures, "bugs": bugs, "head_types": dict(head_types),
            "models": models, "skipped_families": skipped,
            "zero_init_heads_redrawn": sorted(r["model"] for r in models.values()
                                              if r.get("zero_init_head_redrawn")),
            "settings": {"timm": timm.__version__, "images": N_IMAGES,
                         "input": "the model's own pretrained_cfg input_size",
                         "logit_rtol": LOGIT_RTOL, "time_limit_s": time_limit,
                         "selection": "fewest parameters (meta device) among the family's "
                                      "models with num_classes > 0",
                         "torch_threads": torch.get_num_threads()},
            "machine": machine(), "sweep_seconds": round(time.perf_counter() - t0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--families", nargs="*", help="timm modules (default: all); not written")
    ap.add_argument("--time-limit", type=int, default=300, help="seconds per model")
    ap.add_argument("--dag", type=int, default=0, help="time a no-op dvc repro with N models")
    ap.add_argument("--dag-dir", type=Path, help="--dag: work (and keep the clone) here")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    out = OUT / "zoo.json"
    old = json.loads(out.read_text()) if out.exists() else {}
    if a.dag:
        from zoo_dag import dag_check

        dag = dag_check(a.dag, a.dag_dir)
        write_json(out, {k: v for k, v in old.items() if not k.startswith(DAG_KEYS)} | dag,
                   digits=4)
        return
    res = sweep(a.families, a.time_limit)
    if a.families:
        print(json.dumps(res, indent=2))
        return
    write_json(out, res | {k: v for k, v in old.items() if k.startswith(DAG_KEYS)}, digits=4)


if __name__ == "__main__":
    main()
