"""Load the NPZ datasets written by imageToNPZ.py as torch tensors ready for the GAN.

    npzData/<fruit>_version<NAME>.npz  ->  FruitDataset(pixels (N,R,R) uint8, the split as indices, ...)

The file format is npz_format.py's, the held-out split heldout_split.py's, the pixel map pictures.py's.
Every problem (missing version or fruit, a malformed file) is a UserError saying what exists and what to run."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from fruitgan.data.npz_format import NPZ_DIR, list_versions, npz_path, read_npz
from fruitgan.data.heldout_split import validation_mask
from fruitgan.util.pictures import unit_range
from fruitgan.util.safe_files import check_name
from fruitgan.util.user_io import UserError


@dataclass
class FruitDataset:
    """One fruit of one dataset version, its pixels kept as stored (uint8, one copy): the parts are index
    tensors into ``pixels`` and ``images_at`` converts only the images a caller needs to [-1, 1]."""

    fruit: str
    version: str
    pixels: torch.Tensor  # (N, R, R) uint8, white strokes (255) on black (0)
    augmented: torch.Tensor  # (N,) bool: True for augmented copies
    source_index: torch.Tensor  # (N,) int64: index of the real image each one comes from (itself if real)
    metadata: dict = field(default_factory=dict)  # metadata.json fields + count, npz_created, image_files
    heldout: Optional[torch.Tensor] = None  # (N,) bool: kept out of training (npz_format); None: no split
    validation: Optional[torch.Tensor] = None  # (N,) bool: the held-out real drawings that pick checkpoints

    def __post_init__(self) -> None:
        n = self.pixels.shape[0]
        if self.heldout is None:      # older files and too-small fruits: everything trains, nothing is held out
            self.heldout = torch.zeros(n, dtype=torch.bool)
        if self.validation is None:   # heldout_split's rule over the held-out real drawings, in index order
            held = torch.nonzero(self.heldout & ~self.augmented).reshape(-1)
            self.validation = torch.zeros(n, dtype=torch.bool)
            part = torch.from_numpy(validation_mask(int(held.numel()), self.fruit))
            self.validation[held[part]] = True

    @property
    def resolution(self) -> int:
        return int(self.pixels.shape[-1])

    def images_at(self, index: torch.Tensor) -> torch.Tensor:
        """The images at ``index`` as the networks see them: (K, 1, R, R) float32 in [-1, 1]."""
        return unit_range(self.pixels[index])

    @staticmethod
    def _where(mask: torch.Tensor) -> torch.Tensor:
        return torch.nonzero(mask).reshape(-1)

    @property
    def real_index(self) -> torch.Tensor:
        """Indices of the real drawings (N_real,)."""
        return self._where(~self.augmented)

    @property
    def train_index(self) -> torch.Tensor:
        """Indices of what the GAN trains on: every image outside the held-out split (N_train,)."""
        return self._where(~self.heldout)

    @property
    def heldout_index(self) -> torch.Tensor:
        """Indices of the held-out REAL drawings (never trained on), both parts; empty without a split."""
        return self._where(self.heldout & ~self.augmented)

    @property
    def validation_index(self) -> torch.Tensor:
        """The held-out drawings that pick the best checkpoint (heldout_split.validation_mask)."""
        return self._where(self.validation)

    @property
    def test_index(self) -> torch.Tensor:
        """The held-out drawings the reported figures are measured on: never used to choose anything."""
        return self._where(self.heldout & ~self.augmented & ~self.validation)

    @property
    def heldout_images(self) -> torch.Tensor:
        """The held-out REAL drawings, both parts: (N_held, 1, R, R) in [-1, 1]."""
        return self.images_at(self.heldout_index)

    @property
    def has_split(self) -> bool:
        return bool(self.heldout.any())

    @property
    def split_note(self) -> Optional[str]:
        """Why there is no held-out split (None when there is one): shown instead of the figures needing it."""
        if self.has_split:
            return None
        record = self.metadata.get("heldout")
        note = record.get("note") if isinstance(record, dict) else None
        return note or ("not enough real drawings: this dataset has no held-out split (made before splits "
                        "existed); rebuild it with rawDataToImage.py and imageToNPZ.py")

    def sample_index(self, index: torch.Tensor, cap: int, seed: int = 0) -> torch.Tensor:
        """At most ``cap`` of ``index``, a seeded choice kept in index order (all of them when fewer)."""
        if index.numel() <= cap:
            return index
        pick = torch.randperm(index.numel(), generator=torch.Generator().manual_seed(seed))[:cap]
        return index[pick.sort().values]

    def __len__(self) -> int:
        return int(self.pixels.shape[0])


def _missing_message(workdir: Path, version: str, fruit: Optional[str] = None) -> str:
    versions = list_versions(workdir)
    if version not in versions:
        there = ", ".join(versions) if versions else f"none in {Path(workdir) / NPZ_DIR}"
        return (f"no dataset version {version!r} (versions there are: {there}); "
                f"run imageToNPZ.py --version {version} to create it")
    return (f"version {version!r} has no {fruit!r} dataset (it has: {', '.join(versions[version])}); "
            f"run imageToNPZ.py --version {version} --fruits {fruit} to create it")


def load_fruit(workdir: Path, version: str, fruit: str) -> FruitDataset:
    """One fruit's dataset; UserError naming what exists when the file is missing or malformed."""
    path = npz_path(workdir, fruit, version)
    if not os.path.lexists(path):   # a FIFO or folder there is refused by read_npz, in one line
        raise UserError(_missing_message(workdir, version, fruit))
    packed = read_npz(path, fruit, version)
    return FruitDataset(fruit, version, pixels=torch.from_numpy(packed.images),   # the file's array: no copy
                        augmented=torch.from_numpy(packed.augmented.copy()),
                        source_index=torch.from_numpy(packed.source_index.astype(np.int64)), metadata=packed.metadata,
                        heldout=None if packed.heldout is None else torch.from_numpy(packed.heldout.copy()))


def load_version(workdir: Path, version: str, fruits: Optional[Sequence[str]] = None) -> dict:
    """{fruit: FruitDataset} for every fruit of the version (or the ones named); one resolution for all."""
    check_name(version, "version")
    available = list_versions(workdir).get(version)
    if not available:
        raise UserError(_missing_message(workdir, version))
    chosen = list(available) if fruits is None else list(dict.fromkeys(fruits))
    if not chosen:
        raise UserError(f"no fruit given; version {version!r} has: {', '.join(available)}")
    datasets = {fruit: load_fruit(workdir, version, fruit) for fruit in chosen}
    sizes = {fruit: ds.resolution for fruit, ds in datasets.items()}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{f} {r}x{r}" for f, r in sizes.items())
        raise UserError(f"fruits of version {version!r} have different resolutions ({listed}); train them "
                        "separately or rebuild them at one resolution with rawDataToImage.py and imageToNPZ.py")
    return datasets
