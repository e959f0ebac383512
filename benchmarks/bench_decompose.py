"""Algorithm 1 and all ablations for ResNet20 (50k x 64 train features). Writes metrics/bench/decompose.json."""

import logging
import time

from _common import OUT, machine

from fclens.ablate import ablation_block
from fclens.decompose import index_mask, influential_indices
from fclens.tables import read_fc_weights, read_features
from fclens.io import read_table, write_json
from fclens.params import load_params


def main():
    logging.basicConfig(level=logging.INFO)
    p = load_params()
    w, b, _ = read_fc_weights(read_table("data/cifar_resnet20/fc_weights.parquet"))
    x_tr, y_tr, _ = read_features(read_table("data/cifar_resnet20/features_train.parquet"))
    x_te, y_te, _ = read_features(read_table("data/cifar_resnet20/features_test.parquet"))
    k1, k2 = p["decompose"]["k1"], p["decompose"]["k2"]
    t0 = time.perf_counter()
    idx, _ = influential_indices(x_tr, y_tr, w.shape[0], k1, k2)
    alg1_s = time.perf_counter() - t0
    sets = index_mask(idx, w.shape[1])
    mean, std = x_tr.mean(0), x_tr.std(0)
    t0 = time.perf_counter()
    for m in p["ablate"]["noise_modes"]:
        ablation_block(x_te, y_te, w, b, sets, m, mean, std, 0, p["ablate"]["n_random"])
    abl_s = time.perf_counter() - t0
    res = {"machine": machine(), "n_train": len(x_tr), "n_test": len(x_te), "dim": w.shape[1],
           "algorithm1_seconds": alg1_s, "ablations_all_modes_seconds": abl_s,
           "noise_modes": p["ablate"]["noise_modes"], "n_random": p["ablate"]["n_random"]}
    write_json(OUT / "decompose.json", res, digits=4)
    logging.info("%s", res)


if __name__ == "__main__":
    main()
