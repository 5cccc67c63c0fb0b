"""The NPZ dataset format: the one module that names, writes, lists and reads (validating) it.

    npzData/<fruit>_version<NAME>.npz holds these arrays:
  images       (N, R, R) uint8, white strokes (255) on black (0), real images first, then augmented
  augmented    (N,) bool
  source_index (N,) int32   a real image's own index; an augmented image's index of its real source
  metadata     0-d unicode array: JSON of the version's metadata.json + "count", "npz_created", "image_files"
  heldout      (N,) bool, optional: kept out of GAN training (the held-out real drawings and any copy of one);
               files without it (older ones) read as "no split" (PackedFruit.heldout None)

Written by imageToNPZ.py, read by data_loader.py. Files are written atomically and opened with
allow_pickle=False (a dataset can never run code); numpy only (no torch), so the packing script starts fast."""
from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from fruitgan.util.run_lock import RunLock
from fruitgan.util import settings
from fruitgan.util.safe_files import atomic_save_npz, check_name, checked_size, inside, list_folder, open_regular, read_npy_header
from fruitgan.util.user_io import UserError

NPZ_DIR = "npzData"
VERSION_PREFIX = "version"
NPZ_NAME = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_-]*?)_version([A-Za-z0-9_][A-Za-z0-9_-]*)\.npz$")
REQUIRED_ARRAYS = ("images", "augmented", "source_index", "metadata")
OPTIONAL_ARRAYS = ("heldout",)
# Sane bounds for what a file's array headers may claim, checked before numpy allocates anything.
MAX_IMAGES = 10_000_000
MAX_PIXELS = 2**33                     # 8 GiB of uint8 images
MAX_METADATA_BYTES = 256 * 1024 * 1024  # the JSON string (4 bytes per character in a numpy 'U' array)


@dataclass
class PackedFruit:
    """The arrays of one NPZ file."""

    images: np.ndarray  # (N, R, R) uint8
    augmented: np.ndarray  # (N,) bool
    source_index: np.ndarray  # (N,) int32 when written; any integer dtype is accepted when read
    metadata: dict = field(default_factory=dict)  # metadata.json + count, npz_created, image_files
    heldout: Optional[np.ndarray] = None  # (N,) bool: held out of training; None: no split recorded


def npz_path(workdir: Path, fruit: str, version: str) -> Path:
    """npzData/<fruit>_version<NAME>.npz; names are checked so they cannot leave npzData/."""
    name = f"{check_name(fruit, 'fruit')}_{VERSION_PREFIX}{check_name(version, 'version')}.npz"
    return inside(Path(workdir), NPZ_DIR, name)


def version_lock(workdir: Path, version: str) -> RunLock:
    """The lock one packer of version NAME holds while writing its npz files: npzData/.version<NAME>.lock."""
    return RunLock(version_key(workdir, version), f"npz version {version}", "wait for it to finish")


def version_key(workdir: Path, version: str) -> Path:
    """npzData/version<NAME>: no folder, the name its lock and its unfinished-run record are kept beside."""
    return inside(Path(workdir), NPZ_DIR, VERSION_PREFIX + check_name(version, "version"))


def list_versions(workdir: Path) -> dict:
    """{version: [fruit, ...]} of every npz file present, both sorted."""
    folder = Path(workdir) / NPZ_DIR
    versions: dict = {}
    if folder.is_dir():
        for path in (Path(e.path) for e in list_folder(folder, "fix its permissions")):
            match = NPZ_NAME.match(path.name)
            if match:   # a FIFO or folder of that name is listed too: reading it refuses it in one line
                versions.setdefault(match.group(2), []).append(match.group(1))
    return {v: sorted(versions[v]) for v in sorted(versions)}


# ----------------------------------------------------------------------------- writing

def packed_metadata(folder_metadata: dict, fruit: str, version: str, resolution: int, real_count: int,
                    image_files: Sequence[str]) -> dict:
    """The NPZ's metadata: the version's metadata.json with identity and counts set from what was packed."""
    return dict(folder_metadata, fruit=fruit, version=version, resolution=int(resolution), count=len(image_files),
                real_count=real_count, augmented_count=len(image_files) - real_count,
                npz_created=datetime.now(timezone.utc).isoformat(timespec="seconds"), image_files=list(image_files))


def write_npz(path: Path, packed: PackedFruit) -> Path:
    """Save atomically (temp file + os.replace): an older file stays intact until the new one is complete."""
    extra = {} if packed.heldout is None else {"heldout": np.asarray(packed.heldout, dtype=bool)}
    return atomic_save_npz(path, images=packed.images, augmented=packed.augmented,
                           source_index=packed.source_index, metadata=np.array(json.dumps(packed.metadata)), **extra)


# ----------------------------------------------------------------------------- reading

def repack_hint(fruit: str, version: str) -> str:
    return f"recreate it with imageToNPZ.py --version {version} --fruits {fruit} --overwrite"


def _read_arrays(path: Path, fruit: str, version: str) -> dict:
    """The four arrays of the file (pickled objects refused); UserError when unreadable or incomplete."""
    try:
        with open_regular(path, repack_hint(fruit, version)) as fh, np.load(fh, allow_pickle=False) as npz:
            missing = [k for k in REQUIRED_ARRAYS if k not in npz.files]
            if missing:
                raise UserError(f"{path} lacks {', '.join(missing)}: not an imageToNPZ.py dataset; "
                                f"{repack_hint(fruit, version)}")
            _check_headers(npz, path)
            return {k: npz[k] for k in REQUIRED_ARRAYS + OPTIONAL_ARRAYS if k in npz.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        # ValueError also covers object arrays, which would need pickle
        raise UserError(f"cannot read {path} ({exc}); {repack_hint(fruit, version)}") from None


def _check_headers(npz, path: Path) -> None:
    """Each array's shape and size as its header claims them, within sane bounds, before any is loaded."""
    claimed = {}
    for key in REQUIRED_ARRAYS + tuple(k for k in OPTIONAL_ARRAYS if k in npz.files):
        info = npz.zip.getinfo(f"{key}.npy")
        with npz.zip.open(info) as fh:
            shape, dtype, offset = read_npy_header(fh, path)
        if dtype.hasobject:
            raise ValueError(f"{key} holds Python objects, which would need pickle")
        count = 1
        for n in shape:
            count *= checked_size(n, f"{key} dimension", 0, MAX_PIXELS, path)
        # The zip entry must be as long as the array the header claims (a lying header allocates nothing).
        if offset + count * dtype.itemsize != info.file_size:
            raise ValueError(f"{key}'s header claims {count} x {dtype.itemsize} bytes, "
                             f"the entry holds {info.file_size - offset}")
        claimed[key] = (count, dtype)
        if key == "images" and len(shape) == 3:   # the side any network of this suite can train (settings' rule)
            settings.RESOLUTION.check(int(shape[1]))
    # Only sizes here: what the shapes must be is checked, with clearer messages, once loaded.
    checked_size(claimed["images"][0], "images element count", 0, MAX_PIXELS, path)
    for key in ("augmented", "source_index", *OPTIONAL_ARRAYS):
        if key in claimed:
            checked_size(claimed[key][0], f"{key} length", 0, MAX_IMAGES, path)
    checked_size(claimed["metadata"][1].itemsize * claimed["metadata"][0], "metadata size", 0, MAX_METADATA_BYTES, path)


def _check_pixel_arrays(arrays: dict, path: Path, hint: str) -> None:
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
    heldout = arrays.get("heldout")   # optional; an image made from a held-out drawing is held out too
    if heldout is None:
        return
    if heldout.dtype != np.bool_ or heldout.shape != (n,):
        raise UserError(f"{path}: heldout is {heldout.dtype} {tuple(heldout.shape)}, expected bool ({n},); {hint}")
    if n and np.any(heldout[source] & ~heldout):
        raise UserError(f"{path}: images made from held-out drawings are marked for training (the split leaks); {hint}")


def _parse_metadata(meta_array: np.ndarray, path: Path, fruit: str, hint: str) -> dict:
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


def image_shape(path: Path) -> tuple:
    """The (N, R, R) shape of a file's images, read from its header alone (nothing else is loaded)."""
    with open_regular(path, "recreate it with imageToNPZ.py") as raw, zipfile.ZipFile(raw) as archive, \
            archive.open("images.npy") as fh:
        shape, _, _ = read_npy_header(fh, path)
    return tuple(int(n) for n in shape)


def read_npz(path: Path, fruit: str, version: str) -> PackedFruit:
    """One file's arrays, shapes and dtypes checked; UserError (with how to rebuild it) when malformed."""
    arrays = _read_arrays(path, fruit, version)
    hint = repack_hint(fruit, version)
    _check_pixel_arrays(arrays, path, hint)
    metadata = _parse_metadata(arrays["metadata"], path, fruit, hint)
    return PackedFruit(arrays["images"], arrays["augmented"], arrays["source_index"], metadata, arrays.get("heldout"))
