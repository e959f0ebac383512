"""Decode a dataset archive once into compact arrays, or index an image folder:
data/<dataset>/{train,test}.npz."""

from pathlib import Path

from _stage import run

from fclens.data import read_cifar_archive, resolve_archive, save_split, scan_image_folder


def main(args, p):
    cfg, where = p["datasets"][args.dataset], f"params.yaml datasets.{args.dataset}"
    if cfg.get("folder"):
        splits = scan_image_folder(cfg["folder"], where)
    else:
        splits = read_cifar_archive(resolve_archive(cfg["archive"], cfg["checksum"],
                                                    cfg.get("download"), where))
    out = Path(args.out)
    for name, split in splits.items():
        save_split(out / f"{name}.npz", split)


if __name__ == "__main__":
    run("prepare_data", main, lambda ap: (ap.add_argument("--dataset", required=True),
                                          ap.add_argument("--out", required=True)),
        builds_models=True)
