"""Packing an image version into NPZ datasets: the work behind imageToNPZ.py, callable from code.

    written = pack(workdir, "1")          # every complete fruit of imageData/<fruit>/version1/

Reads imageData/<fruit>/version<NAME>/ through image_version.py and writes npzData/<fruit>_version<NAME>.npz
through npz_format.py. Every image is checked before anything is written, each NPZ is written atomically and
one packer writes a version at a time (its lock). Memory: one fruit's uint8 images at a time."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Collection, Optional, Sequence

from fruitgan.data.image_version import (IMAGE_DIR, METADATA_FILE, VERSION_PREFIX, FruitVersion, VersionImages, check_folder,
                           fruit_order, read_version, relative_path, scan_image_versions)
from fruitgan.data.image_version import version_lock as image_version_lock
from fruitgan.data.npz_format import NPZ_DIR, PackedFruit, npz_path, packed_metadata, version_key, write_npz
from fruitgan.data.npz_format import version_lock as npz_version_lock
from fruitgan.util.run_lock import left_unfinished, refuse_if_held, unfinished_until_done
from fruitgan.util.safe_files import BYTES_PER_MB, check_name, clean_stale_temp
from fruitgan.util.user_io import UserError


# ----------------------------------------------------------------------------- finding versions

def version_names(entries: Sequence[FruitVersion]) -> list:
    return sorted({e.version for e in entries})


def fruits_of(entries: Sequence[FruitVersion], version: str, complete_only: bool = False) -> list:
    return [e.fruit for e in entries if e.version == version and (e.complete or not complete_only)]


def newest_complete_version(entries: Sequence[FruitVersion]) -> Optional[str]:
    """The version whose complete fruits were finished most recently (None when nothing is complete)."""
    newest = {}
    for e in (e for e in entries if e.complete):
        newest[e.version] = max(newest.get(e.version, 0.0), e.created)
    return max(newest, key=lambda v: (newest[v], v)) if newest else None


def version_table(workdir: Path, entries: Sequence[FruitVersion]) -> str:
    lines = [f"Image versions in {Path(workdir) / IMAGE_DIR}:",
             f"  {'version':<16} {'fruit':<12} {'images':>8}  {'resolution':<11} status"]
    for e in sorted(entries, key=lambda e: (e.version, fruit_order(e.fruit))):
        res = f"{e.resolution}x{e.resolution}" if e.resolution else "?"
        lines.append(f"  {e.version:<16} {e.fruit:<12} {e.image_count:>8}  {res:<11} {e.status}")
    return "\n".join(lines)


def describe_versions(entries: Sequence[FruitVersion]) -> str:
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
        raise UserError(f"no image version {name!r} in {IMAGE_DIR}/ ({describe_versions(entries)}); "
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


def build_packed(workdir: Path, fruit: str, version: str, progress: bool = True) -> PackedFruit:
    """Check and read imageData/<fruit>/version<NAME>/ into the arrays of its NPZ."""
    found: VersionImages = read_version(workdir, fruit, version, progress)
    count = len(found.names)
    listed = found.metadata.get("count")
    if isinstance(listed, int) and listed != count:
        print(f"note: {relative_path(workdir, found.folder / METADATA_FILE)} lists {listed} images, the folder "
              f"holds {count}; packing the {count} found", file=sys.stderr)
    metadata = packed_metadata(found.metadata, fruit, version, found.images.shape[1], found.real_count, found.names)
    return PackedFruit(found.images, found.augmented, found.source_index, metadata, found.heldout)


# ----------------------------------------------------------------------------- packing

def pack(workdir: Path, version: str, fruits: Optional[Sequence[str]] = None, overwrite: bool = False,
         progress: bool = True, log: Callable[[str], None] = print) -> list:
    """Pack fruits of one version (default: every complete fruit); returns the written npz paths. Never
    prompts (for pipeline scripts): an existing npz is a UserError unless ``overwrite``."""
    workdir = Path(workdir)
    entries = scan_image_versions(workdir)
    version = resolve_version(check_name(str(version), "version"), entries)
    chosen = default_fruits(entries, version, log) if fruits is None else resolve_fruits(list(fruits), version, entries)
    existing = [npz_path(workdir, f, version) for f in existing_npz_fruits(workdir, version, chosen)]
    if existing and not overwrite:
        raise UserError(f"{', '.join(relative_path(workdir, p) for p in existing)} already exist"
                        f"{'s' if len(existing) == 1 else ''}; add --overwrite to replace")
    return pack_fruits(workdir, version, chosen, progress, log, replace=None if overwrite else ())


def existing_npz_fruits(workdir: Path, version: str, fruits: Sequence[str], unfinished: bool = False) -> list:
    """The fruits whose npz exists, except those a packer that stopped early (kill -9, Ctrl+C, an error) left
    unfinished, which the next run replaces without --overwrite; with ``unfinished``, only those."""
    left = left_unfinished(version_key(workdir, version))
    return [f for f in fruits if os.path.lexists(npz_path(workdir, f, version)) and (f in left) == unfinished]


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
                log: Callable[[str], None] = print, replace: Optional[Collection[str]] = None) -> list:
    """Check every folder first, then read and write one fruit at a time, holding the npz version's lock.
    ``replace``: the fruits whose existing npz may be replaced (None: any), checked again under the lock
    (another packer may have written a file after the caller looked)."""
    images = image_version_lock(workdir, version)
    refuse_if_held(images.folder, images.what, "wait for rawDataToImage.py to finish, then pack")
    with npz_version_lock(workdir, version) as lock:
        clean_stale_temp(Path(workdir) / NPZ_DIR, recursive=False)   # temp files of dead packers
        if replace is not None:
            refuse_new_files(workdir, version, fruits, replace)
        redo = existing_npz_fruits(workdir, version, fruits, unfinished=True)
        if redo:
            log(f"{', '.join(redo)} of npz version {version} left unfinished by a packer that stopped early; replacing")
        existing = existing_npz_fruits(workdir, version, fruits)
        creates = [f for f in fruits if f not in existing]
        with unfinished_until_done(lock.folder, creates, fruits) as done:
            return _pack_locked(workdir, version, fruits, progress, log, done)


def refuse_new_files(workdir: Path, version: str, fruits: Sequence[str], replace: Collection[str]) -> None:
    """UserError if a fruit's npz exists that the caller did not agree to replace (written meanwhile)."""
    appeared = [npz_path(workdir, f, version) for f in existing_npz_fruits(workdir, version, fruits) if f not in replace]
    if appeared:
        names = ", ".join(relative_path(workdir, p) for p in appeared)
        raise UserError(f"{names} {'was' if len(appeared) == 1 else 'were'} written by another run meanwhile; "
                        "run again to see it, or add --overwrite to replace it (nothing was written)")


def _pack_locked(workdir: Path, version: str, fruits: Sequence[str], progress: bool,
                 log: Callable[[str], None], done: list) -> list:
    """Pack ``fruits``; each is appended to ``done`` as soon as its npz is complete. Returns the npz paths."""
    for fruit in fruits:  # cheap checks first, so a bad folder fails before anything is written
        check_folder(workdir, fruit, version)
    written = []
    for fruit in fruits:
        try:
            packed = build_packed(workdir, fruit, version, progress)
            written.append(write_npz(npz_path(workdir, fruit, version), packed))
        except UserError as exc:
            if written:  # say what is already done, so nothing is redone or feared lost
                raise UserError(f"{exc} (already written: {', '.join(relative_path(workdir, p) for p in written)})") from None
            raise
        done.append(fruit)
        m, size_mb = packed.metadata, written[-1].stat().st_size / BYTES_PER_MB
        log(f"wrote {relative_path(workdir, written[-1])}: {m['count']} images ({m['real_count']} real + "
            f"{m['augmented_count']} augmented), {m['resolution']}x{m['resolution']}, {size_mb:.2f} MB")
    return written
