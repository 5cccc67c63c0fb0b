"""The image-version folder: the one module that knows how it is laid out, written and read.

    imageData/<fruit>/version<NAME>/
        real_NNNNNN.png               real drawings, NNNNNN = 0, 1, 2 ... in the order they were kept
        aug_NNNNNN_from_SSSSSS.png    augmented copy number NNNNNN, made from real_SSSSSS.png
        metadata.json                 written LAST: its presence marks the version complete

metadata.json's "heldout" record (``heldout_record``) names the real drawings kept out of GAN training; a copy
of one counts as held out too; older versions have no record, no split. Images are 8-bit grayscale, square.

A version is written in the hidden sibling ".version<NAME>.partial-<owner>" and renamed into place when complete
(FruitWriter), so a reader never sees half a version; an overwritten one leaves at the very end through
".version<NAME>.old-<owner>" (``recover_fruit_folder`` repairs a writer killed between the two renames). One process
writes a version at a time (``version_lock``)."""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from fruitgan.util.run_lock import RunLock, left_unfinished
from fruitgan.util.settings import RESOLUTION
from fruitgan.util.safe_files import (FRUITS, NAME_PATTERN, atomic_write_json, check_name, checked_size, clean_stale_temp,
                                     inside, list_folder, open_regular, owner_dead, owner_tag, parse_owner,
                                     partial_folder, read_regular, write_error)
from fruitgan.util.user_io import UserError

IMAGE_DIR = "imageData"
VERSION_PREFIX = "version"
METADATA_FILE = "metadata.json"
REAL_NAME = re.compile(r"^real_(\d{6})\.png$")
AUG_NAME = re.compile(r"^aug_(\d{6})_from_(\d{6})\.png$")
GRAYSCALE_MODE = "L"  # 8-bit grayscale
COLOUR = "white strokes (255) on black (0)"
TOOL = "rawDataToImage.py"
RERUN_HINT = "run rawDataToImage.py again to recreate the version"
STATUS_COMPLETE = "complete"
OLD_MARK = ".old-"   # .version<NAME>.old-<owner>: the previous version while the new one is swapped in


def version_folder(workdir: Path, fruit: str, version: str) -> Path:
    """imageData/<fruit>/version<NAME>/ (names checked so they stay inside imageData/)."""
    return inside(Path(workdir), IMAGE_DIR, check_name(fruit, "fruit"), VERSION_PREFIX + check_name(version, "version"))


def relative_path(workdir: Path, path: Path) -> str:
    """path as shown in messages: relative to the work folder when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path(workdir).resolve()))
    except (ValueError, OSError):
        return str(path)


# ----------------------------------------------------------------------------- writing

def existing_version_fruits(workdir: Path, version: str, fruits: Sequence[str], unfinished: bool = False) -> List[str]:
    """The fruits that already have a version<NAME>/ folder, except those a stopped run (kill -9, Ctrl+C, an error)
    left unfinished, which the next run replaces without --overwrite; with ``unfinished``, only those."""
    left = left_unfinished(version_lock(workdir, version).folder)
    return [f for f in fruits if version_folder(workdir, f, version).exists() and (f in left) == unfinished]


def next_free_version(workdir: Path) -> str:
    """One more than the highest numeric version of any fruit ("1" when there is none)."""
    suffixes = (f.name[len(VERSION_PREFIX):] for f in (Path(workdir) / IMAGE_DIR).glob(f"*/{VERSION_PREFIX}*")
                if f.is_dir())
    return str(max((int(s) for s in suffixes if s.isdigit()), default=0) + 1)


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def version_metadata(fruit: str, version: str, resolution: int, real_count: int, augmented_count: int,
                     **details) -> dict:
    """metadata.json: identity and counts, then the converter's ``details``, then colour, created, tool."""
    return {"fruit": fruit, "version": version, "resolution": int(resolution),
            "count": real_count + augmented_count, "real_count": real_count, "augmented_count": augmented_count,
            **details, "colour": COLOUR, "created": _now(), "tool": TOOL}


def heldout_record(real_files: Sequence[int], real_count: int, share: float, minimum: int, seed_key: str,
                   note: Optional[str] = None) -> dict:
    """metadata.json's "heldout" entry: the real file numbers kept out of training; ``note``: why none are."""
    files = sorted(int(i) for i in real_files)
    return {"count": len(files), "real_count": int(real_count), "real_files": files, "share": float(share),
            "min": int(minimum), "seed_key": seed_key, "note": note}


def heldout_files(metadata: dict) -> Optional[set]:
    """The held-out real file numbers a metadata.json names; None when it has no split record (older versions)."""
    record = metadata.get("heldout")
    if not isinstance(record, dict) or not isinstance(record.get("real_files"), list):
        return None
    return {int(i) for i in record["real_files"] if isinstance(i, int) and not isinstance(i, bool)}


def version_lock(workdir: Path, version: str) -> RunLock:
    """The lock one writer of image version NAME holds (all its fruits): imageData/.version<NAME>.lock."""
    folder = inside(Path(workdir), IMAGE_DIR, VERSION_PREFIX + check_name(version, "version"))
    return RunLock(folder, f"image version {version}", "wait for it to finish or choose another --version")


def recover_fruit_folder(workdir: Path, fruit: str, version: str) -> None:
    """Repair what a dead writer of this fruit's version left (call it holding ``version_lock``): an old
    version a writer killed between publish()'s two renames left is put back; partial folders and temp files go."""
    final = version_folder(workdir, fruit, version)
    parent = final.parent
    if not parent.is_dir():
        return
    prefix = f".{final.name}{OLD_MARK}"
    for old in sorted(parent.glob(f"{prefix}*")):
        owner = parse_owner(old.name[len(prefix):])
        if owner is None or not owner_dead(*owner) or not old.is_dir():
            continue
        if not final.exists():
            try:
                os.replace(old, final)
            except OSError as exc:
                raise write_error(final, exc) from None
        else:
            shutil.rmtree(old, ignore_errors=True)
    clean_stale_temp(parent, recursive=False)


class FruitWriter:
    """Writes one fruit's images into its partial folder and publishes the folder at the end."""

    def __init__(self, workdir: Path, fruit: str, version: str):
        self.final = version_folder(workdir, fruit, version)
        self.partial = partial_folder(self.final)
        try:
            if self.partial.exists():
                shutil.rmtree(self.partial)
            self.partial.mkdir(parents=True)
        except OSError as exc:
            raise UserError(f"cannot write to {self.final.parent}: {exc.strerror or exc}; "
                            "choose a writable --workdir") from None

    def write_real(self, index: int, png: bytes) -> None:
        self.write(f"real_{index:06d}.png", png)   # REAL_NAME

    def write_augmented(self, index: int, source_index: int, png: bytes) -> None:
        self.write(f"aug_{index:06d}_from_{source_index:06d}.png", png)   # AUG_NAME

    def write(self, name: str, data: bytes) -> None:
        try:
            (self.partial / name).write_bytes(data)
        except OSError as exc:   # no space, read-only, permission: one line saying what to do
            raise write_error(self.partial / name, exc) from None

    def publish(self, metadata: dict) -> Path:
        """metadata.json last, then swap the complete folder into place (old version out only now)."""
        atomic_write_json(self.partial / METADATA_FILE, metadata)
        old = None
        if self.final.exists():
            old = self.final.with_name(f".{self.final.name}{OLD_MARK}{owner_tag()}")
            os.replace(self.final, old)
        os.replace(self.partial, self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.final

    def discard(self) -> None:
        shutil.rmtree(self.partial, ignore_errors=True)


# ----------------------------------------------------------------------------- finding versions

@dataclass
class FruitVersion:
    """One imageData/<fruit>/version<NAME>/ folder as found on disk."""

    fruit: str
    version: str
    folder: Path
    image_count: int  # PNG files in the folder
    resolution: Optional[int]  # side in pixels (None when unknown)
    status: str  # "complete", "empty", "incomplete (no metadata.json)", "metadata.json unreadable"
    created: float = 0.0  # POSIX time the version was finished (for "newest"); 0 when incomplete

    @property
    def complete(self) -> bool:
        return self.status == STATUS_COMPLETE


def _count_pngs(folder: Path) -> int:
    with os.scandir(folder) as entries:
        return sum(1 for e in entries if e.name.endswith(".png") and e.is_file())


def _first_png_side(folder: Path) -> Optional[int]:
    from PIL import Image
    for name in sorted(os.listdir(folder)):
        if name.endswith(".png"):
            try:
                with open_regular(folder / name, RERUN_HINT) as fh, Image.open(fh) as img:  # the header only
                    return img.size[0]
            except Exception:  # only for the listing (a FIFO is never waited on); packing reports it properly
                return None
    return None


def _created_time(meta: dict, meta_path: Path) -> float:
    """When the version was finished: metadata "created" (ISO-8601), else the file's mtime."""
    try:
        stamp = datetime.fromisoformat(str(meta["created"]))
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=timezone.utc)
        return stamp.timestamp()
    except (KeyError, ValueError, TypeError):
        return meta_path.stat().st_mtime


def describe_folder(fruit: str, version: str, folder: Path) -> FruitVersion:
    """Status, image count and resolution of one version folder, without reading pixels."""
    try:
        count = _count_pngs(folder)
    except OSError as exc:   # the listing shows it as broken and goes on with the others
        return FruitVersion(fruit, version, folder, 0, None, f"unreadable ({exc.strerror or exc}: fix its permissions)")
    meta_path = folder / METADATA_FILE
    if count == 0:
        return FruitVersion(fruit, version, folder, 0, None, "empty")
    if not meta_path.is_file():
        return FruitVersion(fruit, version, folder, count, _first_png_side(folder), "incomplete (no metadata.json)")
    try:
        meta = json.loads(read_regular(meta_path, RERUN_HINT).decode("utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError, UnicodeDecodeError, UserError):
        return FruitVersion(fruit, version, folder, count, _first_png_side(folder), "metadata.json unreadable")
    resolution = meta.get("resolution")
    if not isinstance(resolution, int):
        resolution = _first_png_side(folder)
    return FruitVersion(fruit, version, folder, count, resolution, STATUS_COMPLETE, _created_time(meta, meta_path))


def fruit_order(name: str):
    """Sort key: the project's fruits first in their usual order, any other fruit folder after them."""
    return (FRUITS.index(name), "") if name in FRUITS else (len(FRUITS), name)


def scan_image_versions(workdir: Path) -> list:
    """Every imageData/<fruit>/version<NAME>/ folder (hidden '.version*.partial-*' folders are skipped)."""
    root = Path(workdir) / IMAGE_DIR
    found = []
    if not root.is_dir():
        return found
    fruit_dirs = (Path(e.path) for e in list_folder(root, "fix its permissions") if e.is_dir())
    for fruit_dir in sorted(fruit_dirs, key=lambda p: fruit_order(p.name)):
        if not NAME_PATTERN.match(fruit_dir.name):
            continue
        try:
            versions = sorted(fruit_dir.iterdir())
        except OSError as exc:   # one broken fruit folder: said, and the others still listed
            print(f"note: skipping {fruit_dir}: cannot list it ({exc.strerror or exc}); fix its permissions",
                  file=sys.stderr)
            continue
        for vdir in versions:
            name = vdir.name[len(VERSION_PREFIX):]
            if vdir.is_dir() and vdir.name.startswith(VERSION_PREFIX) and NAME_PATTERN.match(name):
                found.append(describe_folder(fruit_dir.name, name, vdir))
    return found


# ----------------------------------------------------------------------------- checking and reading one folder

def fruit_folder(workdir: Path, fruit: str, version: str) -> Path:
    """The version folder, which must exist (UserError saying how to create it)."""
    folder = version_folder(workdir, fruit, version)
    if not folder.is_dir():
        raise UserError(f"{relative_path(workdir, folder)}/ does not exist; "
                        f"create it with rawDataToImage.py --version {version}")
    return folder


def list_image_files(folder: Path, workdir: Path) -> tuple:
    """(real file names, augmented file names), each sorted; UserError on an unexpected or orphan file."""
    real, aug = [], []
    for name in (e.name for e in list_folder(folder, "fix its permissions")):
        if REAL_NAME.match(name):
            real.append(name)
        elif AUG_NAME.match(name):
            aug.append(name)
        elif name.endswith(".png"):
            raise UserError(f"unexpected image {relative_path(workdir, folder / name)}: names must be real_NNNNNN.png or "
                            "aug_NNNNNN_from_NNNNNN.png; move it out of the folder")
    if not real and not aug:
        raise UserError(f"{relative_path(workdir, folder)}/ holds no images (expected real_000000.png ...); {RERUN_HINT}")
    known = {REAL_NAME.match(n).group(1) for n in real}
    for name in aug:
        source = AUG_NAME.match(name).group(2)
        if source not in known:
            raise UserError(f"{relative_path(workdir, folder / name)} was made from real_{source}.png, which is missing; "
                            f"delete it or {RERUN_HINT}")
    return real, aug


def read_folder_metadata(folder: Path, workdir: Path, fruit: str, version: str) -> dict:
    path = folder / METADATA_FILE
    if not os.path.lexists(path):
        raise UserError(f"{relative_path(workdir, path)} is missing, so the version is incomplete "
                        f"(rawDataToImage.py did not finish); {RERUN_HINT}")
    try:
        meta = json.loads(read_regular(path, RERUN_HINT).decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {relative_path(workdir, path)}: {exc}; {RERUN_HINT}") from None
    if not isinstance(meta, dict):
        raise UserError(f"{relative_path(workdir, path)} is not a JSON object; {RERUN_HINT}")
    for key, expected in (("fruit", fruit), ("version", version)):
        if key in meta and meta[key] != expected:
            raise UserError(f"{relative_path(workdir, path)} says {key} {meta[key]!r} but the folder is for "
                            f"{expected!r}; was the folder copied or renamed? recreate it with rawDataToImage.py")
    return meta


def check_folder(workdir: Path, fruit: str, version: str) -> tuple:
    """Cheap checks without reading pixels: (folder, real names, augmented names, metadata.json dict)."""
    folder = fruit_folder(workdir, fruit, version)
    real, aug = list_image_files(folder, workdir)
    return folder, real, aug, read_folder_metadata(folder, workdir, fruit, version)


def read_png(path: Path, workdir: Path):
    """One PNG as a (H, W) uint8 array; UserError naming the file when it is unreadable or not grayscale."""
    from PIL import Image
    try:
        with open_regular(path, f"delete it or {RERUN_HINT}") as fh, Image.open(fh) as img:
            for side in img.size:  # from the header, before the pixels are allocated: a side the networks train
                checked_size(side, "image side", RESOLUTION.bounds.lo, RESOLUTION.bounds.hi, relative_path(workdir, path))
            img.load()  # decodes now, so a truncated or corrupt file fails here
            if img.mode != GRAYSCALE_MODE:
                raise UserError(f"{relative_path(workdir, path)} is a {img.mode} image, not 8-bit grayscale (mode L); "
                                f"{RERUN_HINT}")
            return np.asarray(img, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise UserError(f"cannot read {relative_path(workdir, path)} ({exc}); delete it or {RERUN_HINT}") from None


def read_images(folder: Path, names: Sequence[str], resolution: Optional[int], workdir: Path,
                progress: bool = True, desc: str = ""):
    """All images stacked (N, R, R) uint8; every one must be R x R (R from metadata, else the first image)."""
    from tqdm import tqdm
    stack = None
    with tqdm(names, desc=desc, unit="img", disable=not progress, file=sys.stderr, leave=True) as bar:
        for i, name in enumerate(bar):
            pixels = read_png(folder / name, workdir)  # (H, W)
            height, width = pixels.shape
            where = relative_path(workdir, folder / name)
            if height != width:
                raise UserError(f"{where} is {width}x{height}, not square; {RERUN_HINT}")
            if stack is None:
                if resolution and width != resolution:
                    raise UserError(f"{where} is {width}x{height} but metadata.json says resolution {resolution}; "
                                    f"{RERUN_HINT}")
                stack = np.empty((len(names), width, width), dtype=np.uint8)  # (N, R, R)
            elif pixels.shape != stack.shape[1:]:
                raise UserError(f"{where} is {width}x{height} but the other images are "
                                f"{stack.shape[2]}x{stack.shape[1]}; all images of a version must have one size; "
                                f"{RERUN_HINT}")
            stack[i] = pixels
    return stack


@dataclass
class VersionImages:
    """Everything in one complete version folder, checked and decoded."""

    folder: Path
    names: list  # file names: real first, then augmented, each in file-name order
    real_count: int
    images: np.ndarray  # (N, R, R) uint8, in `names` order
    source_index: np.ndarray  # (N,) int32: a real image's own position; an augmented one's real source's
    metadata: dict  # metadata.json as written
    heldout: Optional[np.ndarray] = None  # (N,) bool: held out of training (copies of held-out drawings too); None: no record

    @property
    def augmented(self) -> np.ndarray:
        """(N,) bool: True for the augmented copies (they follow the reals)."""
        return np.arange(len(self.names)) >= self.real_count


def read_version(workdir: Path, fruit: str, version: str, progress: bool = True) -> VersionImages:
    """Check and read imageData/<fruit>/version<NAME>/ (UserError naming the first bad file)."""
    folder, real, aug, meta = check_folder(workdir, fruit, version)
    resolution = meta.get("resolution") if isinstance(meta.get("resolution"), int) else None
    names = real + aug
    images = read_images(folder, names, resolution, workdir, progress, desc=f"{fruit} v{version}")
    # positions, not file numbers: files may have gaps if some were deleted
    position = {REAL_NAME.match(n).group(1): i for i, n in enumerate(real)}
    source = np.asarray(list(range(len(real))) + [position[AUG_NAME.match(n).group(2)] for n in aug], dtype=np.int32)
    return VersionImages(folder, names, len(real), images, source, meta, _heldout_mask(real, source, meta))


def _heldout_mask(real: Sequence[str], source: np.ndarray, meta: dict) -> Optional[np.ndarray]:
    """(N,) bool from metadata's held-out file numbers: a real drawing named there, or any copy made from one."""
    files = heldout_files(meta)
    if files is None:
        return None
    real_held = np.array([int(REAL_NAME.match(n).group(1)) in files for n in real], dtype=bool)
    return real_held[source] if len(real) else np.zeros(len(source), dtype=bool)
