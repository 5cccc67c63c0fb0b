"""The images every metric measures: 8-bit pixel levels (real drawings are 8-bit PNGs: fakes on the same 256
levels cannot be told apart by in-between values), the work resolution, shape checks, CPU threads."""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

from fruitgan.util.user_io import UserError

PIXEL_LEVELS = 255         # real drawings are 8-bit PNGs: 256 levels, 0..255
WORK_RESOLUTION = 32       # larger inputs are area-averaged down to this first: cost stays flat for 64-128 px
EVAL_BATCH = 512           # images per forward pass when measuring
# The metrics' networks are too small to gain from several CPU threads, and on a CPU shared with other
# work extra threads spin-wait: measured 14 ms vs 250 ms per training step on 2 busy cores.
CLASSIFIER_CPU_THREADS = 1


def pixel_levels(images: torch.Tensor) -> torch.Tensor:
    """[-1,1] floats -> 0..255 whole numbers (as float), on CPU."""
    return ((images.detach().float().cpu() + 1.0) * (PIXEL_LEVELS / 2.0)).round().clamp(0, PIXEL_LEVELS)


def from_pixel_levels(pixels: torch.Tensor) -> torch.Tensor:
    """0..255 pixel values (any number type) -> floats in [-1,1], as the networks see them."""
    return pixels.float() / (PIXEL_LEVELS / 2.0) - 1.0


def quantise_pixels(images: torch.Tensor) -> torch.Tensor:
    """(N,1,R,R) in [-1,1] -> the same on the 256 levels of an 8-bit PNG (as real drawings are stored)."""
    return from_pixel_levels(pixel_levels(images))


def to_work_resolution(x: torch.Tensor) -> torch.Tensor:
    """(B,1,R,R) -> (B,1,r,r) with r = min(R, WORK_RESOLUTION): larger images are area-averaged down."""
    if x.shape[-1] > WORK_RESOLUTION or x.shape[-2] > WORK_RESOLUTION:
        return F.adaptive_avg_pool2d(x, WORK_RESOLUTION)
    return x


def not_enough_real(n_real: int, needed: int) -> str:
    return f"not enough real drawings ({n_real} held out, need {needed})"


def check_images(name: str, images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 1:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise UserError(f"{name} must be a (N, 1, R, R) image tensor, got {shape}")


def check_same_size(**sets: torch.Tensor) -> None:
    for name, images in sets.items():
        check_images(name, images)
    sizes = {name: tuple(images.shape[-2:]) for name, images in sets.items()}
    if len(set(sizes.values())) > 1:
        raise UserError("images to compare must have one size; got "
                        + ", ".join(f"{name} {s[0]}x{s[1]}" for name, s in sizes.items()))


@contextmanager
def few_cpu_threads(device="cpu"):
    """Run the metrics' work with CLASSIFIER_CPU_THREADS threads on CPU; the caller's setting is restored."""
    before = torch.get_num_threads()
    if torch.device(device).type == "cpu":
        torch.set_num_threads(min(before, CLASSIFIER_CPU_THREADS))
    try:
        yield
    finally:
        torch.set_num_threads(before)
