"""The offline explorer: a static site with a page per class and per feature of each model of
params explorer.models, from the tables, metrics and plots the other stages wrote."""

import time
from pathlib import Path

from tqdm import tqdm

from _stage import check_declared, run
from fclens.core import io
from fclens.core.errors import FclensError
from fclens.datasets.splits import load_split
from fclens.explain import exemplars
from fclens.explorer import build, gather


def _thumbnails(dataset: str):
    def load(idx):
        return exemplars.thumbnails(load_split(Path("data") / dataset / "train.npz"), idx)
    return load


def main(a, p):
    t0 = time.perf_counter()
    if not p.explorer.models:
        raise FclensError("params.yaml explorer.models: empty; expected at least one model")
    specs = [gather.paths(m, p.feature_models.get(m), m in p.sparsify.models, p.explain.methods,
                          p.explain.classes) for m in p.explorer.models]
    check_declared("explorer", [
        *(str(s.weights.parent) for s in specs), *(str(s.metrics) for s in specs),
        *sorted({str(s.data) for s in specs if s.data}),
        *(f"plots/explain/{s.model}" for s in specs if s.cams)])
    models = [gather.load(s) for s in tqdm(specs, desc="read")]
    datasets = {s.dataset for s in specs if s.dataset}
    metrics = build(models, a.out, p.explorer, {d: _thumbnails(d) for d in datasets})
    io.write_json(a.metrics, metrics)
    io.write_json(a.timing, {"seconds": time.perf_counter() - t0}, digits=3)


if __name__ == "__main__":
    run("explorer", main, "out metrics timing")
