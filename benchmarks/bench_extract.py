"""Images/s of ResNet20 feature extraction, all variants measured in this one run.

(a) naive: eager fp32 forward at batch 1000 over normalized images already in memory;
(b) best fp32: batch size x channels_last x torch.compile, the fastest found, with glibc told to
    keep freed activations (extract.keep_freed_memory, as the stage does);
(c) bf16 autocast (with its feature error and accuracy change against fp32);
(d) the extraction stage's own code path end to end (uint8 -> Parquet) with params.yaml's config;
(e) torch's forward rate over fresh processes, with glibc's malloc defaults and with
    keep_freed_memory (the spread that made the fix worth having);
(f) the CPU inference engines (extract.engine: torch, openvino, onnxruntime) side by side on the
    same uint8 images at params.yaml's batch size: forward rate, feature error against torch,
    and the stage path with each engine.
Updates metrics/bench/extract.json: keys this script does not write (other benchmarks') stay.

    python benchmarks/bench_extract.py             # 5,000 images (the committed figures)
    python benchmarks/bench_extract.py --n 512 --out /tmp/extract.json   # smoke run
"""

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from _common import OUT, best_of, cifar_test_images, machine, spec
from fclens.core.errors import FclensError
from fclens.core.io import write_json
from fclens.core.params import Extract, load_params
from fclens.extract.engines import build_engine
from fclens.extract.loop import extract, keep_freed_memory
from fclens.extract.parts import FeatureWriter
from fclens.models.heads import FeaturePath
from fclens.models.inputs import normalizer, uint8_batches
from fclens.models.registry import build_model

ENGINES = ("torch", "openvino", "onnxruntime")


def normalized(model, imgs: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> the model's normalized float input (N, 3, H, W)."""
    mean = np.array(model.pretrained_cfg["mean"], np.float32)
    std = np.array(model.pretrained_cfg["std"], np.float32)
    return torch.from_numpy(((imgs / np.float32(255) - mean) / std).transpose(0, 3, 1, 2).copy())


def forward_rate(model, x: torch.Tensor, bs: int, channels_last: bool) -> float:
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def run():
        for i in range(0, len(x), bs):
            model.forward_head(model.forward_features(x[i:i + bs]), pre_logits=True)

    run()  # warm-up
    return len(x) / best_of(run)


def best_fp32_runner(config: str, x: torch.Tensor) -> tuple[int, object]:
    """The grid's fastest configuration (e.g. "bs64_cl", "bs64_cl_compiled") as a function that
    runs it once over `x` (normalized, NCHW), and the number of images it covers."""
    bs, layout, *compiled = config.split("_")
    model = build_model(spec("cifar_resnet20")).eval()
    if layout == "cl":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if compiled:
        model = torch.compile(model)
    bs = int(bs.removeprefix("bs"))

    @torch.inference_mode()
    def run():
        for i in range(0, len(x), bs):
            model.forward_head(model.forward_features(x[i:i + bs]), pre_logits=True)
    return len(x), run


def engine_rates(imgs: np.ndarray, x_norm: torch.Tensor, bs: int, res: dict,
                 rounds: int = 5) -> None:
    """(f) Each engine's forward rate on the same uint8 batches and its max abs feature error vs
    torch. Rates are the best of `rounds` interleaved rounds, with torch's best fp32
    configuration from the grid (on normalized NCHW `x_norm`) among them, so the speedup is a
    ratio of rates measured side by side; its denominator is the larger of torch's grid and
    interleaved rates, so it never flatters the engines."""
    model = build_model(spec("cifar_resnet20")).eval()
    path = FeaturePath(normalizer(model), model)  # f32, NCHW weights: what engines export
    x = torch.from_numpy(imgs)  # (N, 32, 32, 3) uint8
    with torch.inference_mode():
        ref = torch.cat([path(x[i:i + bs])[0] for i in range(0, len(x), bs)]).numpy()  # (N, D)
    tm = build_model(spec("cifar_resnet20")).eval().to(memory_format=torch.channels_last)
    tpath = FeaturePath(normalizer(tm), tm)

    @torch.inference_mode()
    def run_torch(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f, logits = tpath(torch.from_numpy(b))
        return f.numpy(), logits.numpy()

    runs, errs, setup, failed = {"torch": run_torch}, {}, {}, {}
    for name in ENGINES[1:]:
        try:
            eng = build_engine(name, path, x[:bs])
        except FclensError as e:  # a missing package: record it, time the others
            failed[name] = str(e)
            continue
        runs[name], setup[name] = eng.run, eng.setup_seconds
    batches = [imgs[i:i + bs] for i in range(0, len(imgs), bs)]
    for name, run in runs.items():
        errs[name] = float(np.abs(np.concatenate([run(b)[0] for b in batches]) - ref).max())
    n_ref, run_ref = best_fp32_runner(res["best_fp32_config"], x_norm)
    run_ref()  # warm-up (and compilation, for a compiled config)
    timed = {name: (len(imgs), lambda run=run: [run(b) for b in batches])
             for name, run in runs.items()} | {"torch_best_fp32": (n_ref, run_ref)}
    per_round = {name: [] for name in timed}
    for _ in range(rounds):
        for name, (n, fn) in timed.items():
            t0 = time.perf_counter()
            fn()
            per_round[name].append(n / (time.perf_counter() - t0))
    best = {name: max(per_round[name]) for name in runs}
    top = max(best, key=best.get)
    # the larger of torch's two best-config rates (grid phase, interleaved here): never flatters
    torch_best = max(res["best_fp32_img_per_s"], max(per_round["torch_best_fp32"]))
    res.update(engines=best, engine_best=top, engine_best_img_per_s=best[top],
               engine_speedup_vs_torch_best=best[top] / torch_best,
               torch_best_fp32_interleaved_img_per_s=max(per_round["torch_best_fp32"]),
               engine_rounds_img_per_s=per_round, engine_max_abs_err=errs,
               engine_setup_seconds=setup, engine_batch_size=bs)
    if failed:
        res["engine_errors"] = failed


def one_process_rate(n: int, keep_freed: bool) -> float:
    """Torch's bs64 channels_last forward rate in this (fresh) process, with or without
    keep_freed_memory: the allocator's state is per process, so each sample needs its own."""
    if keep_freed:
        keep_freed_memory()
    imgs, _ = cifar_test_images(n)
    model = build_model(spec("cifar_resnet20"))
    return forward_rate(model, normalized(model, imgs), 64, True)


def process_spread(n: int, processes: int) -> dict:
    """Torch's rate over `processes` fresh processes each with glibc's defaults and with
    keep_freed_memory, alternating so that drift of the host hits both alike."""
    out = {"glibc_default": [], "keep_freed_memory": []}
    for _ in range(processes):
        for key in out:
            cmd = [sys.executable, __file__, "--n", str(n), "--one-process", key]
            out[key].append(float(subprocess.run(cmd, check=True, capture_output=True,
                                                 text=True).stdout.split()[-1]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=5000, help="CIFAR-10 test images to time")
    ap.add_argument("--out", type=Path, default=OUT / "extract.json")
    ap.add_argument("--processes", type=int, default=4,
                    help="fresh processes per allocator setting for torch's spread")
    ap.add_argument("--one-process", choices=("glibc_default", "keep_freed_memory"),
                    help=argparse.SUPPRESS)  # internal: print one process's rate
    a = ap.parse_args()
    N = a.n
    if a.one_process:
        print(one_process_rate(N, a.one_process == "keep_freed_memory"))
        return
    logging.basicConfig(level=logging.INFO)
    imgs, labels = cifar_test_images(N)
    x = normalized(build_model(spec("cifar_resnet20")), imgs)
    res = {"n_images": N, "model": "cifar_resnet20", "machine": machine()}
    # first, before this process touches the allocator: torch's spread over fresh processes
    spread = process_spread(N, a.processes)
    res["torch_process_img_per_s"] = spread
    res["torch_process_spread"] = {k: [min(v), max(v)] for k, v in spread.items()}
    res["naive_img_per_s"] = forward_rate(build_model(spec("cifar_resnet20")), x, 1000, False)
    # from here on glibc keeps freed activations (as the extraction stage does): part of torch's
    # best configuration, measured after naive, which is what a plain script gets
    res["malloc_tuned"] = keep_freed_memory()
    grid = {}
    for bs in (32, 64, 128):
        for cl in (False, True):
            grid[f"bs{bs}_{'cl' if cl else 'nchw'}"] = forward_rate(
                build_model(spec("cifar_resnet20")), x, bs, cl)
    try:
        compiled = torch.compile(build_model(spec("cifar_resnet20")))
        t0 = time.perf_counter()
        forward_rate(compiled, x[:256], 64, True)
        res["compile_seconds"] = time.perf_counter() - t0
        grid["bs64_cl_compiled"] = forward_rate(compiled, x, 64, True)
    except Exception as e:  # inductor needs a C++ toolchain; record why it was skipped
        res["compile_error"] = f"{type(e).__name__}: {e}"[:200]
    best = max(grid, key=grid.get)
    res.update(fp32_grid_img_per_s=grid, best_fp32_config=best, best_fp32_img_per_s=grid[best])

    cfg = Extract(**load_params().extract.model_dump())
    engine_rates(imgs, x, cfg.batch_size, res)
    bf = Extract(**{**cfg.__dict__, "amp": "bf16"})
    n_bf = N // 5  # bf16 is slow on CPUs without native bf16; its error needs few images
    with tempfile.TemporaryDirectory() as d:
        paths = {name: Path(d) / f"{name}.parquet" for name in ("fp32", "bf16", "fp32_sub")}

        def stage(c: Extract, n: int, path: Path | None):
            model = build_model(spec("cifar_resnet20"))
            batches = uint8_batches(imgs[:n], labels[:n], c.batch_size)
            if path is None:
                return extract(model, batches, c)
            with FeatureWriter(path, 64, 10, c.row_group_size) as w:
                return extract(model, batches, c, w)

        # best of 3, like the forward grid: the same treatment for every figure on a noisy host
        runs = [stage(cfg, N, paths["fp32"]) for _ in range(3)]
        res["stage_img_per_s"] = max(r.images_per_s for r in runs)
        res["fp32_acc"] = runs[0].accuracy
        res["stage_no_write_img_per_s"] = max(stage(cfg, N, None).images_per_s for _ in range(3))
        # the stage path with each engine (interleaved best of 3), to choose params.yaml's
        by_engine = dict.fromkeys((e for e in ENGINES if e not in res.get("engine_errors", {})),
                                  0.0)
        for _ in range(3):
            for e in by_engine:
                r = stage(replace(cfg, engine=e), N, paths["fp32"])
                by_engine[e] = max(by_engine[e], r.images_per_s)
        res["stage_engine_img_per_s"] = by_engine
        res["stage_engine_speedup_vs_naive"] = {e: v / res["naive_img_per_s"]
                                                for e, v in by_engine.items()}
        r16 = stage(bf, n_bf, paths["bf16"])
        r32 = stage(cfg, n_bf, paths["fp32_sub"])
        res.update(bf16_img_per_s=r16.images_per_s, bf16_acc=r16.accuracy,
                   fp32_acc_same_images=r32.accuracy, bf16_n_images=n_bf)
        from fclens.core.tables import read_features
        f32 = read_features(paths["fp32_sub"], 10, 64).x
        f16 = read_features(paths["bf16"], 10, 64).x
        res["bf16_feature_max_abs_err"] = float(np.abs(f32 - f16).max())
        res["bf16_feature_rel_err"] = float(np.linalg.norm(f32 - f16) / np.linalg.norm(f32))
    res["bf16_acc_change"] = res["bf16_acc"] - res["fp32_acc_same_images"]
    res["stage_config"] = {"batch_size": cfg.batch_size, "channels_last": cfg.channels_last,
                           "amp": cfg.amp, "engine": cfg.engine}
    res["speedup_vs_naive"] = res["stage_img_per_s"] / res["naive_img_per_s"]
    res["ratio_to_best"] = res["stage_img_per_s"] / res["best_fp32_img_per_s"]
    # merge: other benchmarks (the image-folder one) write their own keys into this file
    old = json.loads(a.out.read_text()) if a.out.exists() else {}
    for k in ("compile_error", "compile_seconds", "engine_errors"):  # ours, written or not
        old.pop(k, None)
    write_json(a.out, {**old, **res}, digits=4)
    logging.info("%s", {k: v for k, v in res.items() if "img_per_s" in k or "ratio" in k
                        or "speedup" in k or k.startswith("engine")})


if __name__ == "__main__":
    main()
