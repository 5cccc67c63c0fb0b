"""Build report.ipynb from fruitgan/report/report.md, and optionally execute it against two training runs.

    python make_report.py                         # rebuild report.ipynb (no outputs)
    python make_report.py --execute               # ... and run it against report_assets/ (the committed runs)
    python make_report.py --collect models/model_report --execute            # copy a run's small files first
    python make_report.py --collect-heldout models/model_heldout --execute   # the held-out run (+1 generator)
    python make_report.py --collect models/model_x --execute --out /tmp/x/report.ipynb   # a copy elsewhere

The notebook reads its runs' recorded files only (one generator for step 3): executing it never trains a GAN."""
from __future__ import annotations

if __name__ == "__main__":   # first of all: Ctrl+C while the imports below load exits 130 too
    from fruitgan.util.user_io import interrupt_exits_130
    interrupt_exits_130()

import shutil
import sys
from pathlib import Path
from typing import Optional, Sequence

from fruitgan.report import notebook
from fruitgan.util.user_io import ArgumentParser, UserError, run_main

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "report.ipynb"
ASSETS = HERE / "report_assets" / "model_report"
HELDOUT_ASSETS = HERE / "report_assets" / "model_heldout"    # the run measured on held-out drawings
SMALL_SUFFIXES = (".json", ".txt")    # info/ files collect copies (the weights stay out of the repository)


def assets_for(out: Path) -> Path:
    """report_assets/model_report beside the notebook ``out``; <out stem>_assets/ for another one in this folder."""
    out = Path(out).resolve()
    if out == NOTEBOOK:
        return ASSETS
    if out.parent == HERE:
        return HERE / f"{out.stem}_assets" / ASSETS.name
    return out.parent / ASSETS.parent.name / ASSETS.name


def collect(model_dir: Path, dest: Path = ASSETS, generators: Sequence[str] = ()) -> Path:
    """Copy a run's small files (JSON, text, milestone grids) into ``dest``, replacing what was there, plus the
    moving-average generator of each fruit in ``generators`` (step 3 draws from it)."""
    import torch

    from fruitgan.models.checkpoint_files import CheckpointFiles
    from fruitgan.models.folder import ModelFolder
    source = ModelFolder.at(model_dir)         # UserError when it is not a model folder
    if Path(dest).resolve() == source.path.resolve():
        raise UserError(f"{model_dir} is already the report's copy: nothing to collect "
                        "(the notebook reads it as it is)")
    copy = ModelFolder(dest, source.name)
    copy.remove()
    copy.info_dir.mkdir(parents=True)
    for p in source.info_dir.iterdir():
        if p.suffix in SMALL_SUFFIXES:
            shutil.copy2(p, copy.info_dir / p.name)
    for fruit, epochs in source.progress_grids().items():
        for epoch in epochs:
            target = copy.progress_grid_path(fruit, epoch)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source.progress_grid_path(fruit, epoch), target)
    for fruit in generators:
        payload = torch.load(source.generator_path(fruit), map_location="cpu", weights_only=True)
        if payload.get("ema_state_dict"):
            payload["state_dict"] = payload["ema_state_dict"]   # one set of weights: half the bytes, same images
        CheckpointFiles(copy, background=False).write_network(payload)
    return dest


def main(argv: Optional[Sequence[str]] = None) -> int:
    import nbformat

    from fruitgan.models.folder import ModelFolder
    from fruitgan.util.safe_files import atomic_write_text
    p = ArgumentParser(description="Rebuild (and execute) report.ipynb.")
    p.add_argument("--collect", type=Path, help="copy this model folder's small files first, to "
                   "report_assets/model_report beside the --out notebook (and read the run from there)")
    p.add_argument("--collect-heldout", type=Path, help="copy this model folder (the held-out run: fruits with a "
                   "held-out split) to report_assets/model_heldout beside the --out notebook, with its first "
                   "fruit's final generator")
    p.add_argument("--execute", action="store_true", help="run the notebook and keep its outputs")
    p.add_argument("--run", type=Path, default=None, help="run folder to read (default: report_assets/model_report)")
    p.add_argument("--out", type=Path, default=NOTEBOOK)
    args = p.parse_args(argv)
    if args.collect:
        collected = collect(args.collect, assets_for(args.out))
        print("collected into", collected)
        args.run = args.run or collected          # the notebook reads what was just collected
    heldout = None
    if args.collect_heldout:
        first = ModelFolder.at(args.collect_heldout).fruits()[:1]
        heldout = collect(args.collect_heldout, assets_for(args.out).parent / HELDOUT_ASSETS.name, first)
        print("collected into", heldout)
    nb = notebook.build()
    if args.execute:
        notebook.execute(nb, HERE, args.run, heldout)
    atomic_write_text(args.out, nbformat.writes(nb))
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
