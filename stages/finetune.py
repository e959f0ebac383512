"""The whole network fine-tuned under the decomposed head (the paper's code; off by default):
metrics/<model>/finetune.json."""

from pathlib import Path

from _stage import run

from fclens import tables
from fclens.data import load_split
from fclens.finetune import FinetuneConfig, finetune_and_test
from fclens.io import read_json, write_json
from fclens.models.registry import build_model


def main(a, p):
    head = tables.read_fc_weights(a.weights)
    infl = tables.read_influential(a.influential, head.n_classes, head.dim)
    f = p.finetune
    cfg = FinetuneConfig(f.epochs, f.lr, f.batch_size, p.seed, p.extract.device)
    # the dataset's images (its features, a dep, change whenever the images do)
    train, test = (load_split(Path("data") / p.feature_models[a.model] / f"{s}.npz")
                   for s in ("train", "test"))
    metrics = finetune_and_test(build_model(p.model(a.model), p.seed), train, test, head, infl,
                                cfg, read_json(a.extract)["acc_test"])
    write_json(a.metrics, metrics, digits=5)


if __name__ == "__main__":
    run("finetune", main, "model data weights influential extract metrics",
        builds_models=True)
