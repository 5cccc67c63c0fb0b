"""What each training step sees: a fruit's training images as an endless shuffled stream, and its own noise.

An epoch is the same number of full batches for every fruit of a run (by default enough for the largest to
see each training image once), so fruits of any size step together. A fruit walks its images in passes, each
a permutation seeded by the fruit's seed and the pass number: the stream after ``t`` steps depends on ``t``
alone, so a resume needs no saved order and a fruit sees the same batches in any group or rank. Images stay
uint8 (N, R, R) on the training device; a batch becomes [-1, 1] when it is drawn."""
from __future__ import annotations

import hashlib
import math
from typing import Dict, Iterable

import torch

from fruitgan.learn import augment as gan_augment
from fruitgan.util.pictures import unit_range

PASSES_CACHED = 2          # a batch spans at most two passes (when batch <= pass), so two are kept


def steps_per_epoch(requested, train_sizes: Iterable[int], batch: int) -> int:
    """``requested`` when given, else enough steps for the largest training part to be seen once."""
    if requested:
        return int(requested)
    return max(1, math.ceil(max(train_sizes) / batch))


def pass_seed(fruit_seed: int, k: int) -> int:
    """The seed of pass ``k``'s permutation: a 63-bit hash of (fruit seed, k), so passes never share one."""
    digest = hashlib.blake2b(f"{fruit_seed}/pass/{k}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class FruitStream:
    """One fruit's training images, ``batch`` at a time, in seeded passes. pixels: (N, R, R) uint8, every image
    of the fruit's dataset; train_index: (T,) the ones it trains on; both moved to ``device`` once."""

    def __init__(self, pixels: torch.Tensor, train_index: torch.Tensor, seed: int, batch: int, device):
        if pixels.dtype != torch.uint8 or pixels.dim() != 3:
            raise ValueError(f"pixels must be (N, R, R) uint8, got {pixels.dtype} {tuple(pixels.shape)}")
        if train_index.numel() == 0:
            raise ValueError("a fruit needs at least one training image")
        self.device = torch.device(device)
        self.pixels = pixels.to(self.device)
        self.train_index = train_index.to(self.device, torch.long)
        self.size = int(self.train_index.numel())
        self.seed, self.batch = int(seed), int(batch)
        self._passes: Dict[int, torch.Tensor] = {}

    def _pass(self, k: int) -> torch.Tensor:
        """Pass k: the training indices in its own seeded order (T,), on the device."""
        if k not in self._passes:
            while len(self._passes) >= PASSES_CACHED:
                del self._passes[min(self._passes)]
            gen = torch.Generator(device=self.device).manual_seed(pass_seed(self.seed, k))
            order = torch.randperm(self.size, generator=gen, device=self.device)
            self._passes[k] = self.train_index[order]
        return self._passes[k]

    def indices(self, step: int) -> torch.Tensor:
        """(batch,) dataset indices of step ``step`` (counted from the run's first step)."""
        pos, end, parts = step * self.batch, (step + 1) * self.batch, []
        while pos < end:                                    # host arithmetic only: no device sync
            k, offset = divmod(pos, self.size)
            take = min(end - pos, self.size - offset)
            parts.append(self._pass(k)[offset:offset + take])
            pos += take
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def images(self, step: int) -> torch.Tensor:
        """Step ``step``'s real batch: (batch, 1, R, R) float32 in [-1, 1] on the device."""
        return unit_range(self.pixels[self.indices(step)])


def draw_step_inputs(cfg, batch: int, generator: torch.Generator, device):
    """One fruit's noise (batch, nz) and other random numbers, in that order from its own generator."""
    noise = torch.randn(batch, cfg.noise_dim, generator=generator, device=device)
    return noise, gan_augment.draw_step_random(cfg, batch, generator, device)
