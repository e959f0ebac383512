"""The final FC layer of a model -> data/<model>/fc_weights.parquet."""

from _stage import run
from fclens.core import tables
from fclens.datasets.splits import dataset_class_names
from fclens.models.heads import linear_head
from fclens.models.registry import build_model, class_names


def main(a, p):
    model = build_model(p.model(a.model), seed=p.seed)
    ds = p.feature_models.get(a.model)  # a folder dataset names the classes
    names = ds and dataset_class_names(p.datasets[ds], f"params.yaml datasets.{ds}")
    names = class_names(model, names or None, a.model)
    tables.write_fc_weights(a.out, linear_head(model).to_head(names))


if __name__ == "__main__":
    run("extract_weights", main, "model out")
