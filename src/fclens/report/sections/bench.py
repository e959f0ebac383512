"""Benchmarks: metrics/bench/*.json (`make bench`), optional: said when absent."""

from __future__ import annotations

from fclens.report.doc import Inputs
from fclens.report.fmt import num, table

BENCH_DIR = "metrics/bench"  # `make bench`


def section_bench(inp: Inputs) -> list[str]:
    files = sorted((inp.root / BENCH_DIR).glob("*.json"))
    if not files:
        return [f"No benchmark figures yet: `make bench` writes them to `{BENCH_DIR}/`.", ""]
    rows = []
    for f in files:
        b = inp.json(f"{BENCH_DIR}/{f.name}")
        rows += [[f"`{f.name}`", k, num(v)] for k, v in b.items()
                 if isinstance(v, int | float) and not isinstance(v, bool)]
    return ([f"`make bench` (`{BENCH_DIR}/`), one run on one machine; see the project README "
             f"for what each figure measures.", ""] + table(["file", "figure", "value"], rows)
            + _scale_table(inp))


def _scale_table(inp: Inputs) -> list[str]:
    """benchmarks/bench_scale.py: the streamed analyses' cost at each table size."""
    if not (inp.root / BENCH_DIR / "scale.json").exists():
        return []
    s = inp.json(f"{BENCH_DIR}/scale.json")
    rows = [[f"{n:,}", num(r, ".0f"), num(t, ".1f"), num(spm, ".0f")] for n, r, t, spm in
            zip(s["n_rows"], s["peak_rss_mb"], s["seconds"], s["seconds_per_million_rows"])]
    return ["", f"Streamed analyses (Algorithm 1, decomposed accuracy, one ablation) on "
            f"synthetic tables of D = {s['dim']:,}, C = {s['n_classes']:,} "
            f"(`benchmarks/bench_scale.py`): peak memory is set by the batch "
            f"({s['batch_rows']:,} rows), not by N.", ""] + table(
        ["rows", "peak RSS (MB)", "seconds", "seconds per million rows"], rows)
