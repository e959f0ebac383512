"""Decomposed head (logit_c = x[I_c] . W[c, I_c] + b_c), with and without retraining; optionally
the whole network fine-tuned under the decomposed head (decompose.finetune.epochs > 0)."""

from pathlib import Path

import numpy as np
from _stage import run
from dvclive import Live

from fclens.decompose import (accuracy, decomposed_logits, index_mask, read_influential,
                              train_masked_head)
from fclens.tables import read_fc_weights, read_features
from fclens.io import read_table, write_json


def main(args, p):
    cfg = p["decompose"]
    w, b, _ = read_fc_weights(read_table(args.weights))
    x_tr, y_tr, _ = read_features(read_table(Path(args.data) / "features_train.parquet"))
    x_te, y_te, _ = read_features(read_table(Path(args.data) / "features_test.parquet"))
    mask = index_mask(read_influential(read_table(args.influential), w.shape[0]), w.shape[1])
    acc0 = accuracy(x_te @ w.T + b, y_te)
    acc_dec = accuracy(decomposed_logits(x_te, w, b, mask), y_te)
    with Live(dir=args.live, save_dvc_exp=False, dvcyaml=None, report=None) as live:
        def on_epoch(epoch, info):
            live.log_metric("train_loss", info["train_loss"])
            live.log_metric("train_acc", info["train_acc"])
            live.log_metric("test_acc", accuracy(x_te @ info["w"].T + info["b"], y_te))
            live.next_step()

        w2, b2 = train_masked_head(x_tr, y_tr, w, b, mask, cfg["epochs"], cfg["lr"],
                                   cfg["batch_size"], p["seed"], cfg["optimizer"],
                                   on_epoch=on_epoch)
    acc_ret = accuracy(decomposed_logits(x_te, w2, b2, mask), y_te)
    rel = (lambda a: a / acc0 if acc0 > 0 else float("nan"))  # a random model can score 0
    metrics = {
        "k1": cfg["k1"], "k2": cfg["k2"], "acc_original": acc0, "acc_decomposed": acc_dec,
        "acc_decomposed_retrained": acc_ret, "rel_acc": rel(acc_dec),
        "rel_acc_retrained": rel(acc_ret), "union_size": int(mask.any(0).sum()),
        "feature_dim": w.shape[1], "epochs": cfg["epochs"],
        "finetune_epochs": cfg["finetune"]["epochs"],
    }
    if cfg["finetune"]["epochs"] > 0:
        acc_ft, losses = finetune(args, p, mask, w, b)
        metrics.update(acc_decomposed_finetuned=acc_ft, rel_acc_finetuned=rel(acc_ft),
                       finetune_train_loss=losses)
    write_json(args.metrics, metrics, digits=5)


def finetune(args, p, mask, w, b) -> tuple[float, list[float]]:
    """Whole network, decomposed head fixed; test accuracy of the fine-tuned network."""
    from fclens.data import Split, load_split
    from fclens.extract import ExtractConfig, extract, uint8_batches
    from fclens.finetune import finetune_decomposed
    from fclens.io import FclensError
    from fclens.models import build_model
    from fclens.params import model_spec

    ft = p["decompose"]["finetune"]
    tr, te = (load_split(Path(args.dataset) / f"{s}.npz") for s in ("train", "test"))
    if not isinstance(tr, Split):
        raise FclensError("params.yaml decompose.finetune.epochs > 0 needs an archive dataset "
                          "(decoded arrays); image folders are not supported for fine-tuning")
    losses = []
    model = finetune_decomposed(
        build_model(model_spec(p, args.model), p["seed"]), tr.images, tr.labels, mask, w, b,
        ft["epochs"], ft["lr"], ft["batch_size"], p["seed"], p["extract"]["device"],
        on_epoch=lambda e, info: losses.append(info["train_loss"]))
    cfg = ExtractConfig(device=p["extract"]["device"], batch_size=ft["batch_size"])
    acc = extract(model, uint8_batches(te.images, te.labels, cfg.batch_size), cfg).accuracy
    return acc, losses


if __name__ == "__main__":
    run("decompose", main, lambda ap: [ap.add_argument(f"--{k}", required=True) for k in
                                       ("model", "data", "dataset", "weights", "influential",
                                        "metrics", "live")])
