"""The whole network fine-tuned under the decomposed head (off by default) -> finetune.json."""

from _stage import run
from fclens.analysis import finetune
from fclens.core import io, tables
from fclens.datasets.splits import load_split
from fclens.models.registry import build_model


def main(a, p):
    head = tables.read_fc_weights(a.weights)
    infl = tables.read_influential(a.influential, head.n_classes, head.dim)
    f, ds = p.finetune, p.feature_models[a.model]
    # the images, not a dep: the features (deps) change whenever the images do
    train, test = (load_split(f"data/{ds}/{s}.npz") for s in ("train", "test"))
    metrics = finetune.finetune_and_test(build_model(p.model(a.model), p.seed), train, test,
                                         head, infl, f, p.seed, p.extract.device,
                                         io.read_json(a.extract)["acc_test"])
    io.write_json(a.metrics, metrics, digits=5)


if __name__ == "__main__":
    run("finetune", main, "model weights influential extract metrics")
