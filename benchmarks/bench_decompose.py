"""Algorithm 1 and all ablations for ResNet20 (50k x 64 train features).

Writes metrics/bench/decompose.json."""

import logging
import time

from _common import OUT, machine
from fclens.analysis.ablate import Noise, TrainStats, ablation_block
from fclens.analysis.decompose import index_mask, influential_indices
from fclens.core import streaming, tables
from fclens.core.io import write_json
from fclens.core.params import load_params


def main():
    logging.basicConfig(level=logging.INFO)
    p = load_params()
    head = tables.read_fc_weights("data/cifar_resnet20/fc_weights.parquet")
    train, test = streaming.open_splits("data/cifar_resnet20", head)
    k1, k2 = p.decompose.k1, p.decompose.k2
    t0 = time.perf_counter()
    infl = influential_indices(train, head.n_classes, k1, k2)
    alg1_s = time.perf_counter() - t0
    sets = index_mask(infl.idx, head.dim)
    t0 = time.perf_counter()
    stats = TrainStats.from_source(train, head.n_classes)
    for m in p.ablate.noise_modes:
        ablation_block(test, head, sets, Noise.from_train(m, stats, 0), p.ablate.n_random)
    abl_s = time.perf_counter() - t0
    res = {"machine": machine(), "n_train": len(train.labels), "n_test": len(test.labels),
           "dim": head.dim, "algorithm1_seconds": alg1_s, "ablations_all_modes_seconds": abl_s,
           "noise_modes": p.ablate.noise_modes, "n_random": p.ablate.n_random}
    write_json(OUT / "decompose.json", res, digits=4)
    logging.info("%s", res)


if __name__ == "__main__":
    main()
