"""Whole-network fine-tuning: metrics/<m>/finetune.json of each `finetune.models` entry."""

from __future__ import annotations

from fclens.report.doc import Inputs
from fclens.report.fmt import num, pct, table


def section_finetune(inp: Inputs) -> list[str]:
    if not inp.finetune_models:
        return ["Not run: `finetune.models` is empty. It trains the whole network under the "
                "decomposed head (the paper's code), minutes per epoch on a CPU.", ""]
    rows = []
    for m in inp.finetune_models:
        f = inp.json(f"metrics/{m}/finetune.json")
        loss = f["finetune_train_loss"]
        rows.append([m, str(f["epochs"]), pct(f["acc_decomposed_finetuned"]),
                     num(f["rel_acc_finetuned"]),
                     " → ".join(num(x) for x in loss) if loss else "n/a"])
    return (["The whole network trained under the decomposed head, the influential sets fixed "
             "(the paper's code). Without augmentation, on the same training images: compare "
             "with a fine-tuned full network before reading a gain as the decomposition's.", ""]
            + table(["model", "epochs", "decomposed, fine-tuned", "rel acc fine-tuned",
                     "train loss by epoch"], rows))
