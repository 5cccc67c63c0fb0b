"""Pack one image version into per-fruit NPZ datasets.

Reads imageData/<fruit>/version<NAME>/ (image_version.py), writes npzData/<fruit>_version<NAME>.npz
(npz_format.py). The packing itself is npz_packing.py's; this script asks which version and fruits, and
whether to replace existing files.

Examples:
  python imageToNPZ.py                                  # list versions, ask which to pack
  python imageToNPZ.py --version 28px --yes             # every complete fruit of version28px
  python imageToNPZ.py --version 28px --fruits apple,pear --yes --overwrite"""
from __future__ import annotations

if __name__ == "__main__":   # first of all: Ctrl+C while the imports below load exits 130 too
    from fruitgan.util.user_io import interrupt_exits_130
    interrupt_exits_130()

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from fruitgan.data.image_version import IMAGE_DIR, FruitVersion, relative_path, scan_image_versions
from fruitgan.data.npz_format import NPZ_DIR, npz_path
from fruitgan.data.npz_packing import (BYTES_PER_MB, describe_versions, default_fruits, existing_npz_fruits, fruits_of,
                                        newest_complete_version, pack_fruits, resolve_fruits, resolve_version,
                                        version_table)
from fruitgan.util.safe_files import default_workdir
from fruitgan.util.user_io import ArgumentParser, Prompter, UserError, run_main


@dataclass
class PackConfig:
    """Everything main() needs; each field has a command-line flag."""

    workdir: Path  # folder holding imageData/ (read) and npzData/ (written)
    version: Optional[str] = None  # version NAME to pack; None: ask (default: newest complete version)
    fruits: Optional[list] = None  # fruits to pack; None: ask (default: every complete fruit of the version)
    assume_yes: bool = False  # never prompt: take every default, refuse to overwrite unless `overwrite`
    overwrite: bool = False  # replace existing npz files without asking


def parse_args(argv: Optional[Sequence[str]]) -> PackConfig:
    parser = ArgumentParser(description="Pack imageData/<fruit>/version<NAME>/ into npzData/<fruit>_version<NAME>.npz.")
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
        raise UserError(f"no complete image version in {IMAGE_DIR}/ ({describe_versions(entries)}); "
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
    """(fruits whose npz may be written, those of them that may be replaced: None = any). Existing files need
    --overwrite or a 'y'; one that appears after this look was not agreed to (pack_fruits checks again)."""
    existing = existing_npz_fruits(cfg.workdir, version, fruits)
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
        shown = relative_path(cfg.workdir, npz_path(cfg.workdir, fruit, version))
        if fruit not in existing or prompter.confirm(f"{shown} exists. Overwrite it?", False, flag="--overwrite"):
            keep.append(fruit)
        else:
            print(f"keeping {shown}")
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
