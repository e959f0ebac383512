"""Penultimate features of train and test images -> data/<model>/features_{train,test}.parquet."""

from pathlib import Path

from _stage import run

from fclens.data import Split, load_split
from fclens.extract import FeatureWriter, extract, folder_batches, uint8_batches
from fclens.io import write_json
from fclens.models import build_model
from fclens.params import check_feature_dim, extract_config, model_spec


def main(args, p):
    cfg = extract_config(p)
    model = build_model(model_spec(p, args.model), seed=p["seed"])
    check_feature_dim(p, model.num_features, args.model)  # fail before the long extraction
    out, data = Path(args.out), Path(args.data)
    metrics, seconds, n_total = {}, 0.0, 0
    for split in ("train", "test"):
        s = load_split(data / f"{split}.npz")
        with FeatureWriter(out / f"features_{split}.parquet", model.num_features,
                           cfg.row_group_size) as w:
            batches = (uint8_batches(s.images, s.labels, cfg.batch_size) if isinstance(s, Split)
                       else folder_batches(s, model, cfg.batch_size, cfg.num_workers))
            r = extract(model, batches, cfg, w,
                        total=-(-len(s.labels) // cfg.batch_size), desc=f"{args.model} {split}")
        metrics[f"acc_{split}"] = r.accuracy
        metrics[f"n_{split}"] = r.n
        metrics["logit_max_abs_err"] = max(metrics.get("logit_max_abs_err", 0.0),
                                           r.logit_max_abs_err)
        seconds += r.seconds
        n_total += r.n
    metrics.update(feature_dim=r.feature_dim, device=r.device, images_per_s=n_total / seconds,
                   batch_size=cfg.batch_size, amp=cfg.amp, channels_last=cfg.channels_last)
    write_json(args.metrics, metrics, digits=5)


if __name__ == "__main__":
    run("extract_activations", main, lambda ap: (
        ap.add_argument("--model", required=True), ap.add_argument("--data", required=True),
        ap.add_argument("--out", required=True), ap.add_argument("--metrics", required=True)),
        builds_models=True)
