"""The final FC layer of a model -> data/<model>/fc_weights.parquet."""

from _stage import run
from fclens import data
from fclens.core import tables
from fclens.extract import loop as extract
from fclens.models.registry import build_model, class_names


def main(a, p):
    model = build_model(p.model(a.model), seed=p.seed)
    ds = p.feature_models.get(a.model)  # a folder dataset names the classes
    names = ds and data.dataset_class_names(p.datasets[ds], f"params.yaml datasets.{ds}")
    tables.write_fc_weights(a.out, extract.fc_head(model, class_names(model, names or None,
                                                                      a.model)))


if __name__ == "__main__":
    run("extract_weights", main, "model out", builds_models=True)
