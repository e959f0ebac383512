"""Shared by the benchmarks: the model and images they time, and where results go."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from fclens.core.params import load_params

OUT = Path("metrics/bench")


def _cpu() -> dict:
    """The CPU's model name and the flags that decide which engine wins: torch and OpenVINO
    both use AMX and AVX512 (bf16) where the CPU has them, so rates from two hosts compare only
    when these agree."""
    model, flags = platform.processor(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            if key.strip() == "model name":
                model = val.strip()
            elif key.strip() == "flags":
                flags = set(val.split())
    except OSError:  # not Linux: the name platform gives is all there is
        pass
    wanted = ("amx", "avx512_bf16", "avx512f")
    return {"cpu_model": model, "cpu_flags": sorted(f for f in flags if f.startswith(wanted))}


def machine() -> dict:
    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), **_cpu(),
            "platform": platform.platform(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def best_of(fn, repeat: int = 3) -> float:
    """Fastest of `repeat` timings (the least disturbed by a noisy shared machine)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def cifar_test_images(n: int) -> tuple[np.ndarray, np.ndarray]:
    from fclens.datasets.splits import load_split

    s = load_split("data/cifar10/test.npz")  # from `dvc repro prepare_data`
    return s.images[:n], s.labels[:n]


def spec(name: str):
    return load_params().model(name)
