"""The natural-image magnitude spectrum that MACO keeps fixed (Fel et al. 2023), from images the
project has, so nothing is downloaded at run time (horama fetches an ImageNet one from a bucket).

MACO builds an image as sigmoid(standardize(irfft2(M * exp(i phi))) @ C): C is horama's square
root of the RGB colour correlation, so M is the mean magnitude of natural images in the
*decorrelated* colour space, x @ C^-1. The zero frequency (DC) is what lets an image take a
mean colour (its phase sets the sign, M the size), so it must not be 0; but the images' own DC
(their mean colour, ~H*W/2) would dwarf every other term and, after standardization, leave a
flat image (ResNet20: one class's MACO logit image stuck at p = 0.12, self-rate 0.9 instead of
1.0). So DC gets the mean magnitude of its three nearest frequencies: a mean colour as free as
the coarsest pattern. Constant images have nothing but DC: refused.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fclens.core.errors import FclensError


def color_sqrt() -> np.ndarray:
    """(3, 3) square root of the RGB correlation; an image is recorrelated as x @ C."""
    from horama.common import get_color_correlation_svd_sqrt

    return get_color_correlation_svd_sqrt(torch.device("cpu")).numpy().astype(np.float64)


def magnitude_spectrum(images: np.ndarray, where: str) -> np.ndarray:
    """images (N, H, W, 3) uint8 or float in [0, 1] -> M (3, H, W//2 + 1) float32, the mean
    |rfft2| of the colour-decorrelated images. `where` names the source in errors."""
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        raise FclensError(f"{where}: images of shape {images.shape}; expected (N, H, W, 3), N >= 1")
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    inv = torch.from_numpy(np.linalg.inv(color_sqrt())).float()
    mag, peak = torch.zeros(3, images.shape[1], images.shape[2] // 2 + 1, dtype=torch.float64), 0.0
    for i in range(0, len(images), 128):  # bounded memory, float32 FFTs
        x = torch.from_numpy(np.asarray(images[i:i + 128], np.float32) / scale) @ inv  # decorr.
        x = x.permute(0, 3, 1, 2)  # (b, 3, H, W)
        peak = max(peak, float((x - x.mean(dim=(2, 3), keepdim=True)).abs().max()))  # texture
        mag += torch.fft.rfft2(x).abs().sum(0).double()
    mag = (mag / len(images)).numpy()
    mag[:, 0, 0] = (mag[:, 0, 1] + mag[:, 1, 0] + mag[:, -1, 0]) / 3  # DC: see the docstring
    if peak < 1e-6:  # every image one colour: nothing but the DC term
        raise FclensError(f"{where}: all {len(images)} images are constant (one colour each), so "
                          f"their magnitude spectrum is zero; expected natural images with texture")
    return mag.astype(np.float32)


def resize_spectrum(mag: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """M (3, h, w//2+1) -> (3, H, W//2+1) bilinearly, as horama resizes its template."""
    shape = (size[0], size[1] // 2 + 1)
    if mag.shape[1:] == shape:
        return mag
    t = F.interpolate(torch.from_numpy(mag)[None], size=shape, mode="bilinear",
                      align_corners=False, antialias=True)[0]
    return t.numpy()


def photo_crops(photos: list[np.ndarray], side: int, n: int, seed: int) -> np.ndarray:
    """n random side x side crops (random flips) of photos (H, W, 3) uint8 whose short side is
    first resized to `side`: enough samples for a smooth mean spectrum from a few photos.
    Returns (n, side, side, 3) uint8, n // len(photos) (+1) crops of each photo in turn."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    scaled = []
    for p in photos:
        h, w = p.shape[:2]
        s = side / min(h, w)
        scaled.append(np.asarray(Image.fromarray(p).resize(
            (max(side, round(w * s)), max(side, round(h * s))), Image.BILINEAR)))
    out = np.empty((n, side, side, 3), np.uint8)
    for k in range(n):
        p = scaled[k % len(scaled)]
        y = rng.integers(0, p.shape[0] - side + 1)
        x = rng.integers(0, p.shape[1] - side + 1)
        crop = p[y:y + side, x:x + side]
        out[k] = crop[:, ::-1] if rng.random() < 0.5 else crop
    return out
