"""Timing: the stages' wall-clock files (metrics/timing/) and metrics/pipeline.json if present."""

from __future__ import annotations

from fclens.report.doc import Inputs
from fclens.report.fmt import CAM_NAMES, num, table

TIMING_DIR = "metrics/timing"  # <stage>@<item>.json, written by the stages
PIPELINE_JSON = "metrics/pipeline.json"  # benchmarks/repro_timed.py, after `dvc repro`


def section_timing(inp: Inputs) -> list[str]:
    rows = []
    for m in inp.feature_models:
        t = inp.json(f"{TIMING_DIR}/extract_activations@{m}.json")
        rows.append([f"extract_activations@{m}", f"{num(t['images_per_s'], '.0f')} images/s"])
    for m in inp.models:
        t = inp.json(f"{TIMING_DIR}/fit_ald@{m}.json")
        rows.append([f"fit_ald@{m}", f"{num(t['fit_seconds'])} s for all classes and families"])
    for m in inp.sparsify_models:
        t = inp.json(f"{TIMING_DIR}/sparsify@{m}.json")
        rows.append([f"sparsify@{m}", f"{num(t['seconds'], '.0f')} s for all methods"])
    for stage, names in (("explain_dataset", list(inp.feature_models)),
                         ("explain_photos", list(inp.photo_models))):
        for m in names:
            t = inp.json(f"{TIMING_DIR}/{stage}@{m}.json")
            by = ", ".join(f"{CAM_NAMES.get(k, k)} {num(v)}"
                           for k, v in sorted(t["seconds_per_map_by_method"].items()))
            rows.append([f"{stage}@{m}", f"{num(t['seconds_per_map'])} s/map ({by})"])
    lines = [f"Wall-clock figures of the last run of each stage (`{TIMING_DIR}/`), on the "
             f"machine that ran it.", ""] + table(["stage", "figure"], rows)
    pipe_path = inp.root / PIPELINE_JSON
    if not pipe_path.is_file():
        return lines + [f"No `{PIPELINE_JSON}` yet: `make repro` writes it (stage times and a "
                        f"no-op `dvc repro`).", ""]
    p = inp.json(PIPELINE_JSON)
    by_stage: dict[str, list[float]] = {}
    for name, s in p["seconds_by_stage"].items():
        by_stage.setdefault(name.split("@")[0], []).append(s)
    lines += [f"Whole pipeline (`{PIPELINE_JSON}`, from the `make repro` before this report; "
              f"written after `dvc repro`, so not a dependency of it): {p['n_stages']} stages, "
              f"{num(sum(sum(v) for v in by_stage.values()), '.0f')} s of stage time, a no-op "
              f"`dvc repro` in {num(p['repro_noop_seconds'])} s.", ""]
    return lines + table(["stage", "runs", "seconds"],
                         [[k, str(len(v)), num(sum(v), ".1f")] for k, v in
                          sorted(by_stage.items(), key=lambda kv: -sum(kv[1]))])
