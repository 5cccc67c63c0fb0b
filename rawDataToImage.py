"""Turn Quick, Draw! fruit drawings from rawData/ into PNG datasets under imageData/.

    python rawDataToImage.py                      # asks each question, showing its default
    python rawDataToImage.py --yes --resolution 28 --count 500 --fruits apple,pear

Output (layout: image_version.py): imageData/<fruit>/version<NAME>/real_000000.png ... (+ aug_*.png with
--augment) and metadata.json; an interrupted run never leaves a half version. The work itself is
image_conversion.py's; this script asks the questions and prints the summary."""
from __future__ import annotations

if __name__ == "__main__":   # first of all: Ctrl+C while the imports below load exits 130 too
    from fruitgan.util.user_io import interrupt_exits_130
    interrupt_exits_130()

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence, Tuple

from fruitgan.data import quickdraw_formats as qf
from fruitgan.util import settings as st
from fruitgan.data.image_conversion import ConvertOptions, convert, format_summary, scan_workdir
from fruitgan.data.image_version import existing_version_fruits, next_free_version, version_lock
from fruitgan.util.run_lock import refuse_if_held
from fruitgan.util.safe_files import default_workdir
from fruitgan.util.user_io import ArgumentParser, Prompter, UserError, list_of, run_main


def build_parser() -> argparse.ArgumentParser:
    """Setting flags have the argparse default None (the prompt asks then); see settings.py for each."""
    parser = ArgumentParser(prog="rawDataToImage.py", description="Render Quick, Draw! fruit drawings from "
                            "rawData/ as PNG datasets in imageData/.")
    st.FRUIT_LIST.add_to(parser, shown="every fruit with data")
    for setting in (st.RESOLUTION, st.QUALITY, st.COUNT, st.IMAGE_VERSION):
        setting.add_to(parser)
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None, help=st.AUGMENT.help_text())
    for setting in (st.SEED, st.FORMATS, st.WORKERS):
        setting.add_to(parser)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="folder holding rawData/ imageData/ npzData/ models/ (default: the scripts' folder)")
    parser.add_argument("--yes", "-y", action="store_true", help="never ask: take defaults and flags")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing version")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _choose_version(args, prompter: Prompter, workdir: Path, fruits: Sequence[str]) -> Tuple[str, bool]:
    """The version name and whether it replaces an existing one; asks again after a refused overwrite."""
    def parse_version(text: str) -> str:
        name = st.IMAGE_VERSION.parse(text)
        lock = version_lock(workdir, name)
        refuse_if_held(lock.folder, lock.what, "choose another name")   # refused now, not after the questions
        return name

    name = args.version
    while True:
        if name is None:
            name = st.IMAGE_VERSION.ask(prompter, next_free_version(workdir), parse=parse_version)
        existing = existing_version_fruits(workdir, name, fruits)
        if not existing or args.overwrite:
            return name, bool(existing)
        if prompter.assume_yes:
            raise UserError(f"version {name} already exists for {', '.join(existing)}; "
                            "choose another --version or add --overwrite to replace it")
        if prompter.confirm(f"Version {name} already exists for {', '.join(existing)}. Replace it "
                            "(the old images stay until the new ones are complete)?", False, flag="--overwrite"):
            return name, True
        name = None


def gather_options(args, prompter: Prompter, scan: qf.RawDataScan, workdir: Path) -> ConvertOptions:
    """Flags first; a prompt (showing its default) for each question a flag did not answer."""
    formats = st.FORMATS.given(args.formats)
    found = scan.fruits_with_data(formats)
    if not found:
        raise UserError(f"no usable Quick, Draw! data in {scan.raw_dir} (formats: {formats}); see rawData/README.md")
    fruits = args.fruits
    if fruits is None:
        fruits = prompter.ask("Fruits to convert (comma-separated, 'all' for every one)", found,
                              list_of(found, "fruit"), show_default=",".join(found), flag="--fruits FRUITS")
    resolution = st.RESOLUTION.ask(prompter) if args.resolution is None else args.resolution
    quality = args.quality
    if quality is None:
        if not prompter.assume_yes:
            print("Quality presets (which drawings are kept):", file=prompter.stdout)
            for p in qf.QUALITY_PRESETS.values():
                print(f"  {p.name:<9} {p.description}", file=prompter.stdout)
        quality = st.QUALITY.ask(prompter)
    count = st.COUNT.ask(prompter) if args.count is None else args.count
    augment = args.augment
    if augment is None:
        augment = prompter.confirm("Fill up to that count with augmented copies (small rotations, "
                                   "scaling, shifts, jitter of real strokes)?", st.AUGMENT.default,
                                   flag="--augment or --no-augment")
    version, replaces = _choose_version(args, prompter, workdir, fruits)
    return ConvertOptions(workdir=workdir, fruits=list(fruits), resolution=resolution, quality=quality,
                          count=count, version=version, augment=bool(augment), seed=st.SEED.given(args.seed),
                          formats=formats, workers=st.WORKERS.given(args.workers), overwrite=replaces,
                          progress=not args.no_progress)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    workdir = Path(args.workdir) if args.workdir else default_workdir()
    prompter = Prompter(assume_yes=args.yes)
    options = gather_options(args, prompter, scan_workdir(workdir), workdir)
    print(format_summary(convert(options)))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
