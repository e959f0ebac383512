"""Data: each feature dataset's format, source and size (metrics/data/<dataset>.json)."""

from __future__ import annotations

from fclens.core.errors import FclensError
from fclens.report.doc import Inputs
from fclens.report.fmt import table

DATA_NOTES = {
    "cifar10-jpeg": "the JPEG copy of CIFAR-10, not the lossless original. JPEG artefacts cost "
                    "checkpoints trained on lossless images accuracy, so their original accuracy "
                    "here is below the published one (see the paper row under Ablations).",
    "cifar10-python": "the official lossless CIFAR-10 (python pickles), the data the published "
                      "checkpoints were trained and tested on.",
    "image-folder": "an image folder (ImageFolder's convention: class = sorted folder name), "
                    "each image resized and cropped by the model's own eval transform.",
}


def _feature_datasets(inp: Inputs) -> list[str]:
    return list(dict.fromkeys(inp.feature_models.values()))


def section_data(inp: Inputs) -> list[str]:
    if not inp.feature_models:
        return ["No feature model (`feature_models` is empty), so no dataset was read.", ""]
    rows, notes = [], []
    for ds in _feature_datasets(inp):
        rel = f"metrics/data/{ds}.json"
        d = inp.json(rel)
        if d["format"] not in DATA_NOTES:
            raise FclensError(f"{rel}: format {d['format']!r}; expected one of "
                              f"{', '.join(DATA_NOTES)}")
        users = ", ".join(m for m, v in inp.feature_models.items() if v == ds)
        rows.append([ds, f"`{d['format']}`", f"`{d['source']}`", str(d["n_train"]),
                     str(d["n_test"]), str(d["n_classes"]), users])
        notes.append(f"- **{ds}** is {DATA_NOTES[d['format']]}")
    return (table(["dataset", "format", "source", "train", "test", "classes", "used by"], rows)
            + notes + [""])
