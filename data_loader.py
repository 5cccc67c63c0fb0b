"""Load the NPZ datasets written by imageToNPZ.py as torch tensors ready for the GAN.

    npzData/<fruit>_version<NAME>.npz  ->  FruitDataset(images (N,1,R,R) float32 in [-1, 1], ...)

The file format (names, arrays, checks) is npz_format.py's; the pixel map (0 -> -1.0, 255 -> +1.0,
matching the generator's tanh output) is pictures.py's. Every problem (missing version or fruit,
wrong shape or dtype, unreadable file) is a UserError that says what exists and what to run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from npz_format import NPZ_DIR, list_versions, npz_path, read_npz
from pictures import to_unit_range
from safe_files import check_name
from user_io import UserError


@dataclass
class FruitDataset:
    """One fruit of one dataset version."""

    fruit: str
    version: str
    images: torch.Tensor  # (N, 1, R, R) float32 in [-1, 1]
    augmented: torch.Tensor  # (N,) bool: True for augmented copies
    source_index: torch.Tensor  # (N,) int64: index of the real image each one comes from (itself if real)
    metadata: dict = field(default_factory=dict)  # metadata.json fields + count, npz_created, image_files
    heldout: Optional[torch.Tensor] = None  # (N,) bool: kept out of training (npz_format); None: no split

    def __post_init__(self) -> None:
        if self.heldout is None:      # older files and too-small fruits: everything trains, nothing is held out
            self.heldout = torch.zeros(self.images.shape[0], dtype=torch.bool)

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    @property
    def real_images(self) -> torch.Tensor:
        """Only the real drawings: (N_real, 1, R, R)."""
        return self.images[~self.augmented]

    @property
    def train_images(self) -> torch.Tensor:
        """What the GAN trains on: every image outside the held-out split (N_train, 1, R, R)."""
        return self.images[~self.heldout]

    @property
    def heldout_images(self) -> torch.Tensor:
        """The held-out REAL drawings (never trained on): (N_held, 1, R, R); empty without a split."""
        return self.images[self.heldout & ~self.augmented]

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

    def __len__(self) -> int:
        return int(self.images.shape[0])


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
    if not path.is_file():
        raise UserError(_missing_message(workdir, version, fruit))
    packed = read_npz(path, fruit, version)
    return FruitDataset(
        fruit=fruit,
        version=version,
        images=to_unit_range(packed.images),
        augmented=torch.from_numpy(packed.augmented.copy()),
        source_index=torch.from_numpy(packed.source_index.astype(np.int64)),
        metadata=packed.metadata,
        heldout=None if packed.heldout is None else torch.from_numpy(packed.heldout.copy()),
    )


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
