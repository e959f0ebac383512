"""Decode a dataset archive once into compact arrays: data/<dataset>/{train,test}.npz."""

from pathlib import Path

from _stage import run

from fclens.data import read_cifar_archive, resolve_archive, save_split


def main(args, p):
    cfg = p["datasets"][args.dataset]
    archive = resolve_archive(cfg["archive"], cfg["checksum"], cfg.get("download"),
                              f"params.yaml datasets.{args.dataset}")
    splits = read_cifar_archive(archive)
    out = Path(args.out)
    for name, split in splits.items():
        save_split(out / f"{name}.npz", split)


if __name__ == "__main__":
    run("prepare_data", main, lambda ap: (ap.add_argument("--dataset", required=True),
                                          ap.add_argument("--out", required=True)))
