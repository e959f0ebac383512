"""How the analysis stages' cost grows with N, at ImageNet width (D = 2,048, C = 1,000).

For each N (50k, 200k, 1M by default) a synthetic, class-structured features table is written to
a temporary directory (not committed; the 1M table is ~8 GB), then a fresh process runs what the
stages run on it, streamed: Algorithm 1 (select_influential), the decomposed accuracy
(decompose, no refit) and one ablation (ablate: training-feature statistics, then the
influential sets noised per class with feature_stats noise). The table serves as train and test.
The process reports its peak RSS (ru_maxrss) and seconds; table writing is not timed.

Writes metrics/bench/scale.json: n_rows, peak_rss_mb, seconds (lists, one entry per N),
rss_ratio_largest_to_smallest (target <= 1.5), seconds_per_million_rows (list) and
seconds_per_million_rows_ratio (largest N against 200k; target <= 1.3).

    python benchmarks/bench_scale.py                  # 50k, 200k, 1M (~20 min on 2 cores)
    python benchmarks/bench_scale.py --max-rows 200000
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fclens.core import streaming, tables
from fclens.extract.parts import FeatureWriter

D, C, K = 2048, 1000, 5
SEED = 0
log = logging.getLogger("bench_scale")


def _head(rng: np.random.Generator) -> tuple[tables.Head, np.ndarray]:
    """Class centres (C, D), sparse and non-negative like pooled post-ReLU features, and a head
    that reads them (imperfectly)."""
    # scale 0.6: the head is right on ~77% of rows, about a ResNet-50's top-1 on ImageNet
    centers = np.maximum(rng.normal(-1.0, 1.0, size=(C, D)), 0).astype(np.float32) * 0.6
    w = centers - centers.mean(0) + rng.normal(0, 0.15, size=(C, D)).astype(np.float32)
    return tables.Head(w.astype(np.float32), np.zeros(C, np.float32),
                       tuple(f"class{c}" for c in range(C))), centers


def write_table(path: Path, n: int) -> None:
    """n rows of relu(centre[label] + noise); pred = label (the bench times the analyses, and
    argmax over 1,000 classes for 1M rows would double the writing time)."""
    rng = np.random.default_rng(SEED)
    _, centers = _head(rng)
    chunk = streaming.batch_rows_for(D)
    with FeatureWriter(path, D, C, row_group_size=10_000) as w:
        for i in range(0, n, chunk):
            m = min(chunk, n - i)
            y = rng.integers(0, C, m)
            x = centers[y]
            x += rng.standard_normal((m, D), dtype=np.float32)
            np.maximum(x, 0, out=x)
            w.write(np.arange(i, i + m), y, y, np.zeros(m, np.float32), x)


def run_analyses(path: Path) -> dict:
    """What select_influential, decompose (no refit) and one ablation do, streamed."""
    from fclens.analysis.ablate import Noise, TrainStats, class_hits
    from fclens.analysis.decompose import accuracies, index_mask, influential_indices

    head, _ = _head(np.random.default_rng(SEED))
    src = streaming.FeatureTable(path, C, D)
    t = {}
    t0 = time.perf_counter()
    infl = influential_indices(src, C, K, K)
    t["algorithm1"] = time.perf_counter() - t0
    sets = index_mask(infl.idx, D)  # (C, D)
    t0 = time.perf_counter()
    acc0, acc_dec = accuracies(src, [(head.w, head.b), (head.w * sets, head.b)])
    t["decomposed_accuracy"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    noise = Noise.from_train("feature_stats", TrainStats.from_source(src, C), SEED)
    hits, n = class_hits(src, head, C, lambda y: sets[y], noise, np.random.default_rng(SEED))
    t["ablation"] = time.perf_counter() - t0
    return {"seconds": sum(t.values()), "phases": t, "acc_original": acc0,
            "acc_decomposed": acc_dec, "acc_noise_influential_per_class": hits.sum() / n.sum(),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _measure(path: Path) -> dict:
    """run_analyses in a fresh process, so each N's peak RSS is its own."""
    out = subprocess.run([sys.executable, __file__, "--analyse", str(path)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="50000,200000,1000000")
    ap.add_argument("--max-rows", type=int, default=None, help="drop sizes above this")
    ap.add_argument("--dir", default=None, help="where the temporary tables go ($TMPDIR)")
    ap.add_argument("--out", default="metrics/bench/scale.json")
    ap.add_argument("--analyse", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.analyse:
        print(json.dumps(run_analyses(Path(a.analyse))))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sizes = sorted(int(s) for s in a.sizes.split(","))
    if a.max_rows:
        sizes = [n for n in sizes if n <= a.max_rows]
    if not sizes:
        sys.exit(f"bench_scale: no size left under --max-rows {a.max_rows}")
    work = Path(tempfile.mkdtemp(prefix="fclens-scale-", dir=a.dir))
    need = max(sizes) * D * 4 * 1.05  # float32 vectors + Parquet overhead
    free = shutil.disk_usage(work).free
    if free < need:
        shutil.rmtree(work)
        sys.exit(f"bench_scale: {work.parent} has {free / 2**30:.1f} GiB free; the "
                 f"{max(sizes):,}-row table needs {need / 2**30:.1f} GiB. Free space, point "
                 f"--dir elsewhere, or cap with --max-rows {int(free / (D * 4 * 1.05)):d}")
    res = {"dim": D, "n_classes": C, "k1": K, "k2": K, "batch_rows": streaming.batch_rows_for(D),
           "n_rows": [], "peak_rss_mb": [], "seconds": [], "phases": [],
           "disk_free_gb": round(free / 1e9, 1)}
    try:
        for n in sizes:
            path = work / f"features_{n}.parquet"
            t0 = time.perf_counter()
            write_table(path, n)
            log.info("wrote %s rows (%.1f GB) in %.0f s", f"{n:,}", path.stat().st_size / 1e9,
                     time.perf_counter() - t0)
            r = _measure(path)
            path.unlink()
            log.info("N=%s: %.1f s, peak RSS %.0f MB, %s", f"{n:,}", r["seconds"],
                     r["peak_rss_mb"], r["phases"])
            for k in ("n_rows", "peak_rss_mb", "seconds", "phases"):
                res[k].append(n if k == "n_rows" else r[k])
            for k in ("acc_original", "acc_decomposed", "acc_noise_influential_per_class"):
                res.setdefault(k, []).append(r[k])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res["rss_ratio_largest_to_smallest"] = res["peak_rss_mb"][-1] / res["peak_rss_mb"][0]
    res["seconds_per_million_rows"] = [s / n * 1e6 for s, n in zip(res["seconds"],
                                                                   res["n_rows"])]
    if 200_000 in res["n_rows"] and res["n_rows"][-1] > 200_000:
        spm = res["seconds_per_million_rows"]
        res["seconds_per_million_rows_ratio"] = spm[-1] / spm[res["n_rows"].index(200_000)]
    from _common import machine
    from fclens.core.io import write_json

    res["machine"] = machine()
    write_json(a.out, res, digits=4)
    log.info("%s", {k: v for k, v in res.items() if k not in ("phases", "machine")})


if __name__ == "__main__":
    main()
