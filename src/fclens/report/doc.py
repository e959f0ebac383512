"""What every report section reads through: `Inputs` (where metrics/ and plots/ are, and which
models have them) and `Doc` (a metrics JSON whose missing keys raise FclensError naming them).

A missing file or key raises FclensError naming it, so a section is never dropped silently.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fclens.core.errors import FclensError


class Doc(dict):
    """A metrics JSON whose missing keys raise FclensError naming the file and the key."""

    def __init__(self, data: dict, path: str, prefix: str = ""):
        super().__init__({k: Doc(v, path, f"{prefix}{k}.") if isinstance(v, dict) else v
                          for k, v in data.items()})
        self.path, self.prefix = path, prefix

    def __missing__(self, key):
        raise FclensError(f"{self.path}: no key {self.prefix}{key}; rerun the stage that writes "
                          f"it (dvc repro)")


@dataclass(frozen=True)
class Inputs:
    """Where the outputs are (`root` holds metrics/ and plots/) and which models have them."""

    root: Path
    models: list[str]  # every model: weight stages
    archs: dict[str, str]  # model -> arch (params models.<m>.arch)
    feature_models: dict[str, str]  # model -> dataset: activation and decomposition stages
    photo_models: Sequence[str] = ()  # explain.photo_models
    depth_models: Sequence[str] = ()  # depth_study.models
    finetune_models: Sequence[str] = ()  # finetune.models
    sparsify_models: Sequence[str] = ()  # sparsify.models
    geometry_weight_models: Sequence[str] = ()  # geometry.weight_models
    adversarial_models: Sequence[str] = ()  # adversarial.models
    activation_models: Sequence[str] = ()  # activations.models
    visualize_models: Sequence[str] = ()  # visualize.models

    @classmethod
    def from_params(cls, root: str | Path, p) -> Inputs:
        """The model lists of a params.yaml (`fclens.core.params.Params`)."""
        return cls(Path(root), list(p.models), {m: s.arch for m, s in p.models.items()},
                   dict(p.feature_models), list(p.explain.photo_models),
                   list(p.depth_study.models), list(p.finetune.models),
                   list(p.sparsify.models), list(p.geometry.weight_models),
                   list(p.adversarial.models), list(p.activations.models),
                   list(p.visualize.models))

    def json(self, rel: str) -> Doc:
        path = self.root / rel
        if not path.is_file():
            raise FclensError(f"{rel}: missing (the report reads it); run the stage that writes "
                              f"it (dvc repro)")
        try:
            return Doc(json.loads(path.read_text()), rel)
        except json.JSONDecodeError as e:
            raise FclensError(f"{rel}: not valid JSON ({e})") from e

    def png(self, rel: str) -> str:
        """The image's path as seen from report/ (../plots/...); it must exist."""
        if not (self.root / rel).is_file():
            raise FclensError(f"{rel}: missing (the report shows it); run the stage that "
                              f"writes it (dvc repro)")
        return f"../{rel}"

    def pngs(self, rel_dir: str) -> list[tuple[str, str]]:
        """(file stem, path from report/) of every PNG in a plot folder; at least one."""
        found = sorted((self.root / rel_dir).glob("*.png"))
        if not found:
            raise FclensError(f"{rel_dir}/: no PNG (the report shows them); run the stage that "
                              f"writes them (dvc repro)")
        return [(f.stem, f"../{rel_dir}/{f.name}") for f in found]
