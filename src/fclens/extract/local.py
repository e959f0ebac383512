"""The local backend of extraction: `extract` in this process, one call per resumable part;
image folders decoded by `extract.num_workers` DataLoader processes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, replace
from itertools import islice
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from fclens.core.errors import FclensError
from fclens.datasets.splits import Split
from fclens.extract import engines
from fclens.extract.backend import batches_per_part
from fclens.extract.loop import RowBuffer, extract
from fclens.extract.parts import FeatureParts
from fclens.models.inputs import load_uint8, resolve_device, uint8_batches, uint8_transform

if TYPE_CHECKING:
    from fclens.core.params import Extract


class _FolderImages(torch.utils.data.Dataset):
    def __init__(self, split, transform) -> None:
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return load_uint8(self.split.path(i), self.transform), int(self.split.labels[i])


def folder_batches(split, model: nn.Module, batch_size: int, num_workers: int
                   ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Image-folder split -> (B, H, W, 3) uint8 batches decoded by `num_workers` processes."""
    loader = torch.utils.data.DataLoader(
        _FolderImages(split, uint8_transform(model)), batch_size=batch_size, shuffle=False,
        num_workers=num_workers, persistent_workers=False)
    try:
        yield from loader
    except FclensError as e:  # re-raised from a worker with its traceback in the message
        raise FclensError(str(e).rsplit("FclensError: ", 1)[-1].strip()) from None


class LocalBackend:
    """extract() in this process, one call per part: each part carries its own result."""

    def __init__(self, model: nn.Module, cfg: Extract) -> None:
        self.model, self.cfg = model, cfg
        self.engine = engines.for_config(cfg)

    def device_type(self) -> str:
        return resolve_device(self.cfg.device).type

    def compute(self, jobs: list[tuple]) -> None:
        """For each (split, parts, desc): rows parts.done..N-1 of `split`, appended to `parts`
        a row group at a time."""
        for split, parts, desc in jobs:
            self._compute(split, parts, desc)

    def _compute(self, split, parts: FeatureParts, desc: str) -> None:
        cfg, start, n = self.cfg, parts.done, len(split.labels)
        if isinstance(split, Split):
            batches = uint8_batches(split.images[start:], split.labels[start:], cfg.batch_size)
        else:
            rest = replace(split, paths=split.paths[start:], labels=split.labels[start:])
            batches = folder_batches(rest, self.model, cfg.batch_size, cfg.num_workers)
        per_part = batches_per_part(cfg)
        it = iter(batches)
        while parts.done < n:
            rows = RowBuffer()
            left = -(-(n - parts.done) // cfg.batch_size)
            r = extract(self.model, islice(it, per_part), cfg, rows, total=min(per_part, left),
                        desc=f"{desc} from row {parts.done}", engine=self.engine)
            if r.n == 0:
                raise FclensError(f"{desc}: the images ended at row {parts.done}; expected {n}")
            parts.write(np.arange(parts.done, parts.done + r.n), *rows.columns(),
                        meta=asdict(r))

    def close(self) -> None:
        pass
