"""The final FC layer of a model -> data/<model>/fc_weights.parquet."""

from _stage import run

from fclens.extract import fc_weights, fc_weights_table
from fclens.io import write_table
from fclens.models import build_model, class_names
from fclens.params import model_spec


def main(args, p):
    model = build_model(model_spec(p, args.model), seed=p["seed"])
    w, b = fc_weights(model)
    write_table(args.out, fc_weights_table(w, b, class_names(model)))


if __name__ == "__main__":
    run("extract_weights", main, lambda ap: (ap.add_argument("--model", required=True),
                                             ap.add_argument("--out", required=True)),
        builds_models=True)
