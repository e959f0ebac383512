"""Shared by the benchmarks: the model and images they time, and where results go."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from fclens.params import load_params

OUT = Path("metrics/bench")


def machine() -> dict:
    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
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
    from fclens.data import load_split

    s = load_split("data/cifar10/test.npz")  # from `dvc repro prepare_data`
    return s.images[:n], s.labels[:n]


def spec(name: str):
    return load_params().model(name)
