"""Pixels <-> network values, and image grids: defined once for the data, the trainer and the scripts.

Stored images are uint8, white strokes (255) on black (0); the networks see floats in [-1, 1]
(the generator ends in tanh). The map is linear: 0 <-> -1.0, 255 <-> +1.0."""
from __future__ import annotations

import math

import numpy as np
import torch

PIXEL_MAX = 255
PIXEL_HALF_RANGE = PIXEL_MAX / 2  # 127.5: pixel / 127.5 - 1 maps 0..255 onto -1..1


def unit_range(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (..., R, R) tensor on any device -> float32 (..., 1, R, R) = pixel / 127.5 - 1 (0 -> -1.0, 255 -> +1.0).
    As (pixel - 127.5) / 127.5: the subtraction is exact in float32, so each value is rounded once (symmetric
    around 0); dividing first would round twice."""
    if pixels.dtype != torch.uint8:
        raise TypeError(f"expected uint8 pixels, got {pixels.dtype}")
    values = pixels.to(torch.float32)                  # a new tensor: the in-place steps never touch the data
    return values.sub_(PIXEL_HALF_RANGE).div_(PIXEL_HALF_RANGE).unsqueeze(-3)


def to_unit_range(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (N, R, R) numpy array -> float32 (N, 1, R, R) in [-1, 1] (unit_range)."""
    return unit_range(torch.from_numpy(np.ascontiguousarray(pixels)))


def to_pixels(images: torch.Tensor) -> torch.Tensor:
    """Floats in [-1, 1] (any shape) -> uint8 on the CPU, same shape: (x + 1) * 127.5, rounded, clamped
    (a generator's overshoot becomes 0 or 255, never wraps around)."""
    values = images.detach().float().cpu()
    return ((values + 1.0) * PIXEL_HALF_RANGE).round().clamp(0, PIXEL_MAX).to(torch.uint8)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 1, R, R) in [-1, 1] -> (N, R, R) uint8 numpy array, like the stored training images."""
    return to_pixels(images[:, 0]).numpy()


def image_grid(pixels: np.ndarray, columns: int, pad: int, gutter: int, min_tile: int = 1):
    """(N, R, R) uint8 -> one grayscale PIL image: tiles row-major in rows of ``columns``, ``pad`` pixels of
    grey ``gutter`` around each, then enlarged by a whole factor (nearest neighbour: crisp pixels) until a
    tile is at least ``min_tile`` pixels wide."""
    from PIL import Image
    n, r = pixels.shape[0], pixels.shape[1]
    rows = math.ceil(n / columns)
    step = r + pad
    grid = np.full((rows * step + pad, columns * step + pad), gutter, dtype=np.uint8)
    for i in range(n):
        y, x = divmod(i, columns)
        grid[pad + y * step: pad + y * step + r, pad + x * step: pad + x * step + r] = pixels[i]
    scale = max(1, math.ceil(min_tile / r))
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    return Image.fromarray(grid)
