"""Pack one image version into per-fruit NPZ datasets.

Reads  imageData/<fruit>/version<NAME>/  (real_NNNNNN.png, aug_NNNNNN_from_NNNNNN.png, metadata.json,
as written by rawDataToImage.py) and writes  npzData/<fruit>_version<NAME>.npz  holding:

  images       (N, R, R) uint8, white strokes on black, real images first, then augmented (file-name order)
  augmented    (N,) bool
  source_index (N,) int32   a real image's own index; an augmented image's index of its real source
  metadata     0-d unicode array: JSON of metadata.json + "count", "npz_created", "image_files"

Only complete versions (metadata.json present) are packed. Every image is checked (readable PNG,
grayscale "L", one square size) before anything is written, and each NPZ is written atomically, so
a bad file or Ctrl+C never leaves a half-written NPZ and never damages an older one.

Examples:
  python imageToNPZ.py                                  # list versions, ask which to pack
  python imageToNPZ.py --version 28px --yes             # every complete fruit of version28px
  python imageToNPZ.py --version 28px --fruits apple,pear --yes --overwrite
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from safe_files import FRUITS, NAME_PATTERN, atomic_save_npz, check_name, default_workdir, inside
from user_io import Prompter, UserError, run_main

IMAGE_DIR = "imageData"
NPZ_DIR = "npzData"
METADATA_FILE = "metadata.json"
VERSION_PREFIX = "version"
REAL_NAME = re.compile(r"^real_(\d{6})\.png$")
AUG_NAME = re.compile(r"^aug_(\d{6})_from_(\d{6})\.png$")
GRAYSCALE_MODE = "L"  # 8-bit grayscale, as rawDataToImage.py writes
BYTES_PER_MB = 1024 * 1024
RERUN_HINT = "run rawDataToImage.py again to recreate the version"


@dataclass
class PackConfig:
    """Everything main() needs; each field has a command-line flag."""

    workdir: Path  # folder holding imageData/ (read) and npzData/ (written)
    version: Optional[str] = None  # version NAME to pack; None: ask (default: newest complete version)
    fruits: Optional[list] = None  # fruits to pack; None: ask (default: every complete fruit of the version)
    assume_yes: bool = False  # never prompt: take every default, refuse to overwrite unless `overwrite`
    overwrite: bool = False  # replace existing npz files without asking


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
        return self.status == "complete"


@dataclass
class PackedFruit:
    """The arrays of one NPZ file, ready to be saved."""

    images: np.ndarray  # (N, R, R) uint8
    augmented: np.ndarray  # (N,) bool
    source_index: np.ndarray  # (N,) int32
    metadata: dict = field(default_factory=dict)  # metadata.json + count, npz_created, image_files


# ----------------------------------------------------------------------------- finding versions


def npz_file(workdir: Path, fruit: str, version: str) -> Path:
    """npzData/<fruit>_version<NAME>.npz (names checked so they stay inside npzData/)."""
    check_name(fruit, "fruit")
    check_name(version, "version")
    return inside(Path(workdir), NPZ_DIR, f"{fruit}_{VERSION_PREFIX}{version}.npz")


def _count_pngs(folder: Path) -> int:
    with os.scandir(folder) as entries:
        return sum(1 for e in entries if e.name.endswith(".png") and e.is_file())


def _first_png_side(folder: Path) -> Optional[int]:
    from PIL import Image

    for name in sorted(os.listdir(folder)):
        if name.endswith(".png"):
            try:
                with Image.open(folder / name) as img:  # reads the header only
                    return img.size[0]
            except Exception:  # only for the listing; packing reports the bad file properly
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
    count = _count_pngs(folder)
    meta_path = folder / METADATA_FILE
    if count == 0:
        return FruitVersion(fruit, version, folder, 0, None, "empty")
    if not meta_path.is_file():
        return FruitVersion(fruit, version, folder, count, _first_png_side(folder), "incomplete (no metadata.json)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError, UnicodeDecodeError):
        return FruitVersion(fruit, version, folder, count, _first_png_side(folder), "metadata.json unreadable")
    resolution = meta.get("resolution")
    if not isinstance(resolution, int):
        resolution = _first_png_side(folder)
    return FruitVersion(fruit, version, folder, count, resolution, "complete", _created_time(meta, meta_path))


def _fruit_order(name: str):
    # The project's fruits first in their usual order, any other fruit folder after them.
    return (FRUITS.index(name), "") if name in FRUITS else (len(FRUITS), name)


def scan_image_versions(workdir: Path) -> list:
    """Every imageData/<fruit>/version<NAME>/ folder (hidden '.version*.partial-*' folders are skipped)."""
    root = Path(workdir) / IMAGE_DIR
    found = []
    if not root.is_dir():
        return found
    for fruit_dir in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: _fruit_order(p.name)):
        if not NAME_PATTERN.match(fruit_dir.name):
            continue
        for vdir in sorted(fruit_dir.iterdir()):
            name = vdir.name[len(VERSION_PREFIX):]
            if vdir.is_dir() and vdir.name.startswith(VERSION_PREFIX) and NAME_PATTERN.match(name):
                found.append(describe_folder(fruit_dir.name, name, vdir))
    return found


def version_names(entries: Sequence[FruitVersion]) -> list:
    return sorted({e.version for e in entries})


def fruits_of(entries: Sequence[FruitVersion], version: str, complete_only: bool = False) -> list:
    return [e.fruit for e in entries if e.version == version and (e.complete or not complete_only)]


def newest_complete_version(entries: Sequence[FruitVersion]) -> Optional[str]:
    """The version whose complete fruits were finished most recently (None when nothing is complete)."""
    newest = {}
    for e in entries:
        if e.complete:
            newest[e.version] = max(newest.get(e.version, 0.0), e.created)
    return max(newest, key=lambda v: (newest[v], v)) if newest else None


def version_table(workdir: Path, entries: Sequence[FruitVersion]) -> str:
    lines = [f"Image versions in {Path(workdir) / IMAGE_DIR}:",
             f"  {'version':<16} {'fruit':<12} {'images':>8}  {'resolution':<11} status"]
    for e in sorted(entries, key=lambda e: (e.version, _fruit_order(e.fruit))):
        res = f"{e.resolution}x{e.resolution}" if e.resolution else "?"
        lines.append(f"  {e.version:<16} {e.fruit:<12} {e.image_count:>8}  {res:<11} {e.status}")
    return "\n".join(lines)


def _describe_versions(entries: Sequence[FruitVersion]) -> str:
    names = version_names(entries)
    if not names:
        return "there are none"
    marks = [v if fruits_of(entries, v, complete_only=True) else f"{v} (incomplete)" for v in names]
    return "there are: " + ", ".join(marks)


def resolve_version(name: str, entries: Sequence[FruitVersion], complete_only: bool = False) -> str:
    """The version NAME the user meant ('versionA' is accepted for 'A'); UserError lists what exists."""
    name = str(name).strip()
    names = version_names(entries)
    if name not in names and name.startswith(VERSION_PREFIX) and name[len(VERSION_PREFIX):] in names:
        name = name[len(VERSION_PREFIX):]
    if name not in names:
        check_name(name, "version")
        raise UserError(f"no image version {name!r} in {IMAGE_DIR}/ ({_describe_versions(entries)}); "
                        f"create it with rawDataToImage.py --version {name}")
    if complete_only and not fruits_of(entries, name, complete_only=True):
        raise UserError(f"version {name!r} is incomplete (no fruit has metadata.json); pick a complete one")
    return name


def resolve_fruits(text_or_list, version: str, entries: Sequence[FruitVersion]) -> list:
    """Fruits named by the user (comma list, list, or 'all' = every complete one), checked against the version."""
    there = fruits_of(entries, version)
    items = text_or_list if isinstance(text_or_list, (list, tuple)) else str(text_or_list).split(",")
    items = [str(x).strip().lower() for x in items if str(x).strip()]
    if items == ["all"]:
        return fruits_of(entries, version, complete_only=True) or there
    if not items:
        raise UserError(f"no fruit given; version {version} has: {', '.join(there)}")
    unknown = [x for x in items if x not in there]
    if unknown:
        raise UserError(f"version {version} has no images for {', '.join(unknown)} "
                        f"(it has: {', '.join(there) or 'none'}); create them with rawDataToImage.py --version {version}")
    return list(dict.fromkeys(items))


# ----------------------------------------------------------------------------- checking and reading one folder


def _rel(workdir: Path, path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(workdir).resolve()))
    except (ValueError, OSError):
        return str(path)


def fruit_folder(workdir: Path, fruit: str, version: str) -> Path:
    folder = inside(Path(workdir), IMAGE_DIR, check_name(fruit, "fruit"), VERSION_PREFIX + check_name(version, "version"))
    if not folder.is_dir():
        raise UserError(f"{_rel(workdir, folder)}/ does not exist; create it with rawDataToImage.py --version {version}")
    return folder


def list_image_files(folder: Path, workdir: Path) -> tuple:
    """(real file names, augmented file names), each sorted; UserError on an unexpected or orphan file."""
    real, aug = [], []
    for name in sorted(os.listdir(folder)):
        if name == METADATA_FILE:
            continue
        if REAL_NAME.match(name):
            real.append(name)
        elif AUG_NAME.match(name):
            aug.append(name)
        elif name.endswith(".png"):
            raise UserError(f"unexpected image {_rel(workdir, folder / name)}: names must be real_NNNNNN.png or "
                            "aug_NNNNNN_from_NNNNNN.png; move it out of the folder")
    if not real and not aug:
        raise UserError(f"{_rel(workdir, folder)}/ holds no images (expected real_000000.png ...); {RERUN_HINT}")
    known = {REAL_NAME.match(n).group(1) for n in real}
    for name in aug:
        source = AUG_NAME.match(name).group(2)
        if source not in known:
            raise UserError(f"{_rel(workdir, folder / name)} was made from real_{source}.png, which is missing; "
                            f"delete it or {RERUN_HINT}")
    return real, aug


def read_folder_metadata(folder: Path, workdir: Path, fruit: str, version: str) -> dict:
    path = folder / METADATA_FILE
    if not path.is_file():
        raise UserError(f"{_rel(workdir, path)} is missing, so the version is incomplete "
                        f"(rawDataToImage.py did not finish); {RERUN_HINT}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {_rel(workdir, path)}: {exc}; {RERUN_HINT}") from None
    if not isinstance(meta, dict):
        raise UserError(f"{_rel(workdir, path)} is not a JSON object; {RERUN_HINT}")
    for key, expected in (("fruit", fruit), ("version", version)):
        if key in meta and meta[key] != expected:
            raise UserError(f"{_rel(workdir, path)} says {key} {meta[key]!r} but the folder is for {expected!r}; "
                            "was the folder copied or renamed? recreate it with rawDataToImage.py")
    return meta


def read_png(path: Path, workdir: Path):
    """One PNG as a (H, W) uint8 array; UserError naming the file when it is unreadable or not grayscale."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()  # decodes now, so a truncated or corrupt file fails here
            if img.mode != GRAYSCALE_MODE:
                raise UserError(f"{_rel(workdir, path)} is a {img.mode} image, not 8-bit grayscale (mode L); "
                                f"{RERUN_HINT}")
            return np.asarray(img, dtype=np.uint8)
    except UserError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise UserError(f"cannot read {_rel(workdir, path)} ({exc}); delete it or {RERUN_HINT}") from None


def read_images(folder: Path, names: Sequence[str], resolution: Optional[int], workdir: Path,
                progress: bool = True, desc: str = ""):
    """All images stacked (N, R, R) uint8; every one must be R x R (R from metadata, else the first image)."""
    from tqdm import tqdm

    stack = None
    with tqdm(names, desc=desc, unit="img", disable=not progress, file=sys.stderr, leave=True) as bar:
        for i, name in enumerate(bar):
            pixels = read_png(folder / name, workdir)  # (H, W)
            height, width = pixels.shape
            where = _rel(workdir, folder / name)
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


def build_packed(workdir: Path, fruit: str, version: str, progress: bool = True) -> PackedFruit:
    """Check and read imageData/<fruit>/version<NAME>/ into the arrays of its NPZ."""
    folder = fruit_folder(workdir, fruit, version)
    real, aug = list_image_files(folder, workdir)
    meta = read_folder_metadata(folder, workdir, fruit, version)
    resolution = meta.get("resolution") if isinstance(meta.get("resolution"), int) else None
    names = real + aug  # real first, then augmented, each in file-name order
    images = read_images(folder, names, resolution, workdir, progress, desc=f"{fruit} v{version}")

    # source_index: position of the real image in `images` (files may have gaps if some were deleted)
    position = {REAL_NAME.match(n).group(1): i for i, n in enumerate(real)}
    source = list(range(len(real))) + [position[AUG_NAME.match(n).group(2)] for n in aug]
    augmented = np.zeros(len(names), dtype=bool)
    augmented[len(real):] = True

    metadata = dict(meta)
    metadata.update(fruit=fruit, version=version, resolution=int(images.shape[1]), count=len(names),
                    real_count=len(real), augmented_count=len(aug),
                    npz_created=datetime.now(timezone.utc).isoformat(timespec="seconds"), image_files=names)
    if isinstance(meta.get("count"), int) and meta["count"] != len(names):
        print(f"note: {_rel(workdir, folder / METADATA_FILE)} lists {meta['count']} images, the folder holds "
              f"{len(names)}; packing the {len(names)} found", file=sys.stderr)
    return PackedFruit(images, augmented, np.asarray(source, dtype=np.int32), metadata)


def write_npz(path: Path, packed: PackedFruit) -> Path:
    """Save atomically (temp file + os.replace): an older file stays intact until the new one is complete."""
    return atomic_save_npz(path, images=packed.images, augmented=packed.augmented,
                           source_index=packed.source_index, metadata=np.array(json.dumps(packed.metadata)))


# ----------------------------------------------------------------------------- packing


def pack(workdir: Path, version: str, fruits: Optional[Sequence[str]] = None, overwrite: bool = False,
         progress: bool = True, log: Callable[[str], None] = print) -> list:
    """Pack fruits of one version (default: every complete fruit); returns the written npz paths.

    Never prompts (for pipeline scripts): an existing npz is a UserError unless ``overwrite``.
    All folders are checked (names, metadata.json) before any pixel is read or any file written.
    """
    workdir = Path(workdir)
    entries = scan_image_versions(workdir)
    version = resolve_version(check_name(str(version), "version"), entries)
    chosen = default_fruits(entries, version, log) if fruits is None else resolve_fruits(list(fruits), version, entries)
    existing = [npz_file(workdir, f, version) for f in chosen if npz_file(workdir, f, version).exists()]
    if existing and not overwrite:
        raise UserError(f"{', '.join(_rel(workdir, p) for p in existing)} already exist"
                        f"{'s' if len(existing) == 1 else ''}; add --overwrite to replace")
    return pack_fruits(workdir, version, chosen, progress, log)


def default_fruits(entries: Sequence[FruitVersion], version: str, log: Callable[[str], None] = print) -> list:
    """Every complete fruit of the version (incomplete ones are named and skipped); all when none is complete."""
    complete = fruits_of(entries, version, complete_only=True)
    if not complete:
        return fruits_of(entries, version)  # packing them reports exactly what is wrong
    for e in entries:
        if e.version == version and not e.complete:
            log(f"skipping {e.fruit}: {e.status}")
    return complete


def pack_fruits(workdir: Path, version: str, fruits: Sequence[str], progress: bool = True,
                log: Callable[[str], None] = print) -> list:
    """Check every folder first, then read and write one fruit at a time (memory: one fruit's images)."""
    for fruit in fruits:  # cheap checks first, so a bad folder fails before anything is written
        folder = fruit_folder(workdir, fruit, version)
        list_image_files(folder, workdir)
        read_folder_metadata(folder, workdir, fruit, version)
    written = []
    for fruit in fruits:
        try:
            packed = build_packed(workdir, fruit, version, progress)
            written.append(write_npz(npz_file(workdir, fruit, version), packed))
        except UserError as exc:
            if written:  # say what is already done, so nothing is redone or feared lost
                raise UserError(f"{exc} (already written: {', '.join(_rel(workdir, p) for p in written)})") from None
            raise
        log(summary_line(workdir, written[-1], packed))
    return written


def summary_line(workdir: Path, path: Path, packed: PackedFruit) -> str:
    m = packed.metadata
    size_mb = Path(path).stat().st_size / BYTES_PER_MB
    return (f"wrote {_rel(workdir, path)}: {m['count']} images ({m['real_count']} real + {m['augmented_count']} "
            f"augmented), {m['resolution']}x{m['resolution']}, {size_mb:.2f} MB")


# ----------------------------------------------------------------------------- command line


def parse_args(argv: Optional[Sequence[str]]) -> PackConfig:
    parser = argparse.ArgumentParser(
        description="Pack imageData/<fruit>/version<NAME>/ into npzData/<fruit>_version<NAME>.npz.")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="folder holding imageData/ and npzData/ (default: this script's folder)")
    parser.add_argument("--version", default=None, help="version NAME to pack (default: newest complete version)")
    parser.add_argument("--fruits", default=None,
                        help="comma-separated fruits, or 'all' (default: every complete fruit of the version)")
    parser.add_argument("--yes", action="store_true", help="never ask; take the defaults")
    parser.add_argument("--overwrite", action="store_true", help="replace existing npz files without asking")
    args = parser.parse_args(argv)
    return PackConfig(workdir=args.workdir or default_workdir(), version=args.version,
                      fruits=args.fruits, assume_yes=args.yes, overwrite=args.overwrite)


def choose_version(cfg: PackConfig, entries: Sequence[FruitVersion], prompter: Prompter) -> str:
    if cfg.version is not None:
        return resolve_version(cfg.version, entries)
    default = newest_complete_version(entries)
    if default is None:
        raise UserError(f"no complete image version in {IMAGE_DIR}/ ({_describe_versions(entries)}); "
                        "run rawDataToImage.py to finish one")
    return prompter.ask("Version to pack", default, lambda t: resolve_version(t, entries, complete_only=True))


def choose_fruits(cfg: PackConfig, entries: Sequence[FruitVersion], version: str, prompter: Prompter) -> list:
    if cfg.fruits is not None:
        return resolve_fruits(cfg.fruits, version, entries)
    complete = fruits_of(entries, version, complete_only=True)
    default = default_fruits(entries, version)
    if not complete:
        return default  # nothing to choose from; packing names the file that is missing

    def parse(text: str) -> list:
        chosen = resolve_fruits(text, version, entries)
        unfinished = [f for f in chosen if f not in complete]
        if unfinished:
            raise ValueError(f"{', '.join(unfinished)} not complete (no metadata.json); complete: {', '.join(complete)}")
        return chosen

    shown = "all" if default == fruits_of(entries, version) else ",".join(default)
    return prompter.ask(f"Fruits to pack (comma-separated or 'all' = {', '.join(complete)})", default, parse,
                        show_default=shown)


def confirm_overwrites(cfg: PackConfig, fruits: Sequence[str], version: str, prompter: Prompter) -> list:
    """Fruits whose npz may be written: existing files need --overwrite, or a 'y' when asked."""
    existing = [f for f in fruits if npz_file(cfg.workdir, f, version).exists()]
    if not existing or cfg.overwrite:
        return list(fruits)
    if cfg.assume_yes:
        names = ", ".join(_rel(cfg.workdir, npz_file(cfg.workdir, f, version)) for f in existing)
        raise UserError(f"{names} already exist{'s' if len(existing) == 1 else ''}; "
                        "add --overwrite to replace (nothing was written)")
    keep = []
    for fruit in fruits:
        path = npz_file(cfg.workdir, fruit, version)
        if fruit in existing and not prompter.confirm(f"{_rel(cfg.workdir, path)} exists. Overwrite it?", False):
            print(f"keeping {_rel(cfg.workdir, path)}")
            continue
        keep.append(fruit)
    return keep


def main(argv: Optional[Sequence[str]] = None) -> int:
    cfg = parse_args(argv)
    if not Path(cfg.workdir).is_dir():
        raise UserError(f"work folder {cfg.workdir} does not exist; pass --workdir with the folder holding {IMAGE_DIR}/")
    entries = scan_image_versions(cfg.workdir)
    if not entries:
        raise UserError(f"no image versions in {Path(cfg.workdir) / IMAGE_DIR}; run rawDataToImage.py first")
    print(version_table(cfg.workdir, entries))
    prompter = Prompter(assume_yes=cfg.assume_yes)
    version = choose_version(cfg, entries, prompter)
    fruits = confirm_overwrites(cfg, choose_fruits(cfg, entries, version, prompter), version, prompter)
    if not fruits:
        print("nothing to pack")
        return 0
    written = pack_fruits(cfg.workdir, version, fruits)
    total_mb = sum(p.stat().st_size for p in written) / BYTES_PER_MB
    print(f"done: {len(written)} file(s) in {Path(cfg.workdir) / NPZ_DIR}, {total_mb:.2f} MB in all")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
