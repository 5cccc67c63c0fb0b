"""Load the NPZ datasets written by imageToNPZ.py as torch tensors ready for the GAN.

    npzData/<fruit>_version<NAME>.npz  ->  FruitDataset(images (N,1,R,R) float32 in [-1, 1], ...)

Pixels map linearly: 0 (black background) -> -1.0, 255 (white stroke) -> +1.0, matching the
generator's tanh output. Files are opened with allow_pickle=False: a dataset can never run code.
Every problem (missing version or fruit, wrong shape or dtype, unreadable file) is a UserError
that says what exists and what to run.
"""
from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from safe_files import check_name, inside
from user_io import UserError

NPZ_DIR = "npzData"
NPZ_NAME = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_-]*?)_version([A-Za-z0-9_][A-Za-z0-9_-]*)\.npz$")
REQUIRED_ARRAYS = ("images", "augmented", "source_index", "metadata")
PIXEL_HALF_RANGE = 127.5  # pixel / 127.5 - 1 maps 0..255 onto -1..1


@dataclass
class FruitDataset:
    """One fruit of one dataset version."""

    fruit: str
    version: str
    images: torch.Tensor  # (N, 1, R, R) float32 in [-1, 1]
    augmented: torch.Tensor  # (N,) bool: True for augmented copies
    source_index: torch.Tensor  # (N,) int64: index of the real image each one comes from (itself if real)
    metadata: dict = field(default_factory=dict)  # metadata.json fields + count, npz_created, image_files

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    @property
    def real_images(self) -> torch.Tensor:
        """Only the real drawings: (N_real, 1, R, R)."""
        return self.images[~self.augmented]

    def __len__(self) -> int:
        return int(self.images.shape[0])


def npz_path(workdir: Path, fruit: str, version: str) -> Path:
    """npzData/<fruit>_version<NAME>.npz; names are checked so they cannot leave npzData/."""
    check_name(fruit, "fruit")
    check_name(version, "version")
    return inside(Path(workdir), NPZ_DIR, f"{fruit}_version{version}.npz")


def list_versions(workdir: Path) -> dict:
    """{version: [fruit, ...]} of every npz file present, both sorted."""
    folder = Path(workdir) / NPZ_DIR
    versions: dict = {}
    if folder.is_dir():
        for path in folder.iterdir():
            match = NPZ_NAME.match(path.name)
            if match and path.is_file():
                versions.setdefault(match.group(2), []).append(match.group(1))
    return {v: sorted(versions[v]) for v in sorted(versions)}


def _missing_message(workdir: Path, version: str, fruit: Optional[str] = None) -> str:
    versions = list_versions(workdir)
    if version not in versions:
        there = ", ".join(versions) if versions else f"none in {Path(workdir) / NPZ_DIR}"
        return (f"no dataset version {version!r} (versions there are: {there}); "
                f"run imageToNPZ.py --version {version} to create it")
    return (f"version {version!r} has no {fruit!r} dataset (it has: {', '.join(versions[version])}); "
            f"run imageToNPZ.py --version {version} --fruits {fruit} to create it")


def _repack_hint(fruit: str, version: str) -> str:
    return f"recreate it with imageToNPZ.py --version {version} --fruits {fruit} --overwrite"


def _read_arrays(path: Path, fruit: str, version: str) -> dict:
    """The four arrays of the file (pickled objects refused); UserError when unreadable or incomplete."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in REQUIRED_ARRAYS if k not in npz.files]
            if missing:
                raise UserError(f"{path} lacks {', '.join(missing)}: not an imageToNPZ.py dataset; "
                                f"{_repack_hint(fruit, version)}")
            return {k: npz[k] for k in REQUIRED_ARRAYS}
    except UserError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        # ValueError also covers object arrays, which would need pickle
        raise UserError(f"cannot read {path} ({exc}); {_repack_hint(fruit, version)}") from None


def _check_arrays(arrays: dict, path: Path, fruit: str, version: str) -> dict:
    """Validate shapes and dtypes; returns the parsed metadata dict."""
    hint = _repack_hint(fruit, version)
    images, augmented, source = arrays["images"], arrays["augmented"], arrays["source_index"]
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1] != images.shape[2] or images.shape[0] == 0:
        raise UserError(f"{path}: images are {images.dtype} {tuple(images.shape)}, expected uint8 (N, R, R) "
                        f"with N >= 1 square images; {hint}")
    n = images.shape[0]
    if augmented.dtype != np.bool_ or augmented.shape != (n,):
        raise UserError(f"{path}: augmented is {augmented.dtype} {tuple(augmented.shape)}, expected bool ({n},); {hint}")
    if not np.issubdtype(source.dtype, np.integer) or source.shape != (n,):
        raise UserError(f"{path}: source_index is {source.dtype} {tuple(source.shape)}, "
                        f"expected integers ({n},); {hint}")
    if n and (source.min() < 0 or source.max() >= n):
        raise UserError(f"{path}: source_index holds values outside 0..{n - 1}; {hint}")
    meta_array = arrays["metadata"]
    try:
        if meta_array.ndim != 0 or meta_array.dtype.kind != "U":
            raise ValueError(f"a {meta_array.dtype} array of shape {tuple(meta_array.shape)}, not a JSON string")
        metadata = json.loads(str(meta_array[()]))
        if not isinstance(metadata, dict):
            raise ValueError("JSON is not an object")
    except ValueError as exc:
        raise UserError(f"{path}: metadata unreadable ({exc}); {hint}") from None
    if metadata.get("fruit", fruit) != fruit:
        raise UserError(f"{path} holds {metadata['fruit']!r} images, not {fruit!r}: was it renamed? {hint}")
    return metadata


def to_unit_range(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, R, R) -> float32 (N, 1, R, R) = pixel / 127.5 - 1, so 0 -> -1.0 and 255 -> +1.0 exactly.

    Computed as (pixel - 127.5) / 127.5: the subtraction is exact in float32, so each value is rounded
    once (the correctly rounded pixel/127.5 - 1, symmetric around 0); dividing first would round twice.
    """
    pixels = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32)
    return pixels.sub_(PIXEL_HALF_RANGE).div_(PIXEL_HALF_RANGE).unsqueeze(1)


def load_fruit(workdir: Path, version: str, fruit: str) -> FruitDataset:
    """One fruit's dataset; UserError naming what exists when the file is missing or malformed."""
    path = npz_path(workdir, fruit, version)
    if not path.is_file():
        raise UserError(_missing_message(workdir, version, fruit))
    arrays = _read_arrays(path, fruit, version)
    metadata = _check_arrays(arrays, path, fruit, version)
    return FruitDataset(
        fruit=fruit,
        version=version,
        images=to_unit_range(arrays["images"]),
        augmented=torch.from_numpy(arrays["augmented"].copy()),
        source_index=torch.from_numpy(arrays["source_index"].astype(np.int64)),
        metadata=metadata,
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
