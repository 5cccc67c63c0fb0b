"""Pack one image version into per-fruit NPZ datasets.

Reads  imageData/<fruit>/version<NAME>/  (layout: image_version.py; written by rawDataToImage.py) and
writes  npzData/<fruit>_version<NAME>.npz  (format: npz_format.py; read by data_loader.py).

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
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Collection, Optional, Sequence

from image_version import (IMAGE_DIR, METADATA_FILE, VERSION_PREFIX, FruitVersion, VersionImages, check_folder,
                           fruit_order, read_version, relative_path, scan_image_versions)
from image_version import version_lock as image_version_lock
from npz_format import NPZ_DIR, PackedFruit, npz_path, packed_metadata, write_npz
from npz_format import version_lock as npz_version_lock
from run_lock import refuse_if_held
from safe_files import check_name, clean_stale_temp, default_workdir
from user_io import Prompter, UserError, run_main

BYTES_PER_MB = 1024 * 1024


@dataclass
class PackConfig:
    """Everything main() needs; each field has a command-line flag."""

    workdir: Path  # folder holding imageData/ (read) and npzData/ (written)
    version: Optional[str] = None  # version NAME to pack; None: ask (default: newest complete version)
    fruits: Optional[list] = None  # fruits to pack; None: ask (default: every complete fruit of the version)
    assume_yes: bool = False  # never prompt: take every default, refuse to overwrite unless `overwrite`
    overwrite: bool = False  # replace existing npz files without asking


# ----------------------------------------------------------------------------- finding versions


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
    for e in sorted(entries, key=lambda e: (e.version, fruit_order(e.fruit))):
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
    """Pack fruits of one version (default: every complete fruit); returns the written npz paths.

    Never prompts (for pipeline scripts): an existing npz is a UserError unless ``overwrite``.
    All folders are checked (names, metadata.json) before any pixel is read or any file written.
    """
    workdir = Path(workdir)
    entries = scan_image_versions(workdir)
    version = resolve_version(check_name(str(version), "version"), entries)
    chosen = default_fruits(entries, version, log) if fruits is None else resolve_fruits(list(fruits), version, entries)
    existing = [npz_path(workdir, f, version) for f in chosen if npz_path(workdir, f, version).exists()]
    if existing and not overwrite:
        raise UserError(f"{', '.join(relative_path(workdir, p) for p in existing)} already exist"
                        f"{'s' if len(existing) == 1 else ''}; add --overwrite to replace")
    return pack_fruits(workdir, version, chosen, progress, log, replace=None if overwrite else ())


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
    """Check every folder first, then read and write one fruit at a time (memory: one fruit's images).

    Holds the npz version's lock while writing (a second packer of the version is refused).
    ``replace``: the fruits whose existing npz may be replaced (None: any). It is checked again under
    the lock, since another packer may have written a file after the caller looked.
    """
    images = image_version_lock(workdir, version)
    refuse_if_held(images.folder, images.what, "wait for rawDataToImage.py to finish, then pack")
    with npz_version_lock(workdir, version):
        clean_stale_temp(Path(workdir) / NPZ_DIR, recursive=False)   # temp files of dead packers
        if replace is not None:
            refuse_new_files(workdir, version, fruits, replace)
        return _pack_locked(workdir, version, fruits, progress, log)


def refuse_new_files(workdir: Path, version: str, fruits: Sequence[str], replace: Collection[str]) -> None:
    """UserError if a fruit's npz exists that the caller did not agree to replace (written meanwhile)."""
    appeared = [npz_path(workdir, f, version) for f in fruits
                if f not in replace and npz_path(workdir, f, version).exists()]
    if appeared:
        names = ", ".join(relative_path(workdir, p) for p in appeared)
        raise UserError(f"{names} {'was' if len(appeared) == 1 else 'were'} written by another run meanwhile; "
                        "run again to see it, or add --overwrite to replace it (nothing was written)")


def _pack_locked(workdir: Path, version: str, fruits: Sequence[str], progress: bool,
                 log: Callable[[str], None]) -> list:
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
        log(summary_line(workdir, written[-1], packed))
    return written


def summary_line(workdir: Path, path: Path, packed: PackedFruit) -> str:
    m = packed.metadata
    size_mb = Path(path).stat().st_size / BYTES_PER_MB
    return (f"wrote {relative_path(workdir, path)}: {m['count']} images ({m['real_count']} real + {m['augmented_count']} "
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
    return prompter.ask("Version to pack", default, lambda t: resolve_version(t, entries, complete_only=True),
                        flag="--version NAME")


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
                        show_default=shown, flag="--fruits FRUITS")


def confirm_overwrites(cfg: PackConfig, fruits: Sequence[str], version: str, prompter: Prompter) -> tuple:
    """(fruits whose npz may be written, those of them that may be replaced: None = any).

    Existing files need --overwrite, or a 'y' when asked; a file that appears after this look
    was not agreed to (pack_fruits checks again under the lock).
    """
    existing = [f for f in fruits if npz_path(cfg.workdir, f, version).exists()]
    if cfg.overwrite:
        return list(fruits), None
    if not existing:
        return list(fruits), ()
    if cfg.assume_yes:
        names = ", ".join(relative_path(cfg.workdir, npz_path(cfg.workdir, f, version)) for f in existing)
        raise UserError(f"{names} already exist{'s' if len(existing) == 1 else ''}; "
                        "add --overwrite to replace (nothing was written)")
    keep = []
    for fruit in fruits:
        path = npz_path(cfg.workdir, fruit, version)
        if fruit in existing and not prompter.confirm(f"{relative_path(cfg.workdir, path)} exists. Overwrite it?", False,
                                                     flag="--overwrite"):
            print(f"keeping {relative_path(cfg.workdir, path)}")
            continue
        keep.append(fruit)
    return keep, [f for f in keep if f in existing]


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
    fruits, replace = confirm_overwrites(cfg, choose_fruits(cfg, entries, version, prompter), version, prompter)
    if not fruits:
        print("nothing to pack")
        return 0
    written = pack_fruits(cfg.workdir, version, fruits, replace=replace)
    total_mb = sum(p.stat().st_size for p in written) / BYTES_PER_MB
    print(f"done: {len(written)} file(s) in {Path(cfg.workdir) / NPZ_DIR}, {total_mb:.2f} MB in all")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
