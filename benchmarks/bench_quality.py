"""How real do the fakes look, recipe by recipe: train one fruit with each recipe of the ablation and compare.

Each recipe is a named set of training settings; each is trained by the project's trainer (MultiFruitGANTrainer)
on the held-out split of one dataset built from rawData/ in a temporary work folder, and measured at its last
epoch by the held-out tests (gan_evaluation: two-sample accuracy, memorisation ratio; recognisability by the
all-fruit recogniser). The best checkpoint's figures are printed as one table.

    python benchmarks/bench_quality.py --fruit apple --resolution 28 --epochs 400      # the full ablation (hours on CPU)
    python benchmarks/bench_quality.py --fruit banana --count 1000 --epochs 400         # banana at apple's size
    python benchmarks/bench_quality.py --epochs 2 --recipes default,no_ema               # a smoke run
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import imageToNPZ  # noqa: E402
import rawDataToImage  # noqa: E402
import settings as st  # noqa: E402
from gan_trainer import MultiFruitGANTrainer, TrainConfig  # noqa: E402
from safe_files import FRUITS, default_workdir  # noqa: E402
from user_io import UserError, choice_of, cli_value, int_in_range, list_of, run_main  # noqa: E402

BENCH_VERSION = "quality"
ALL_REAL = st.COUNT_MAX      # convert every real drawing the fruit has (no augmentation)
# name -> TrainConfig settings (anything not named keeps its declared default: batch 64, lr 0.0002, EMA 0.999
# with warm-up since the 400-epoch ablation picked it, precision auto; "no_ema" is the assignment's plain recipe)
RECIPES = {
    "default": {},
    "no_ema": {"ema_decay": 0.0},
    "batch32": {"batch_size": 32},
    "batch32_no_ema": {"batch_size": 32, "ema_decay": 0.0},
    "lr1e-4": {"lr": 1e-4},
    "smooth0.9": {"real_label": 0.9},
    "fp32": {"precision": "fp32"},      # the default recipe in each arithmetic ("default" is --precision auto:
    "bf16": {"precision": "bf16"},      # bf16 where the CPU multiplies bf16): does the faster one cost quality?
}


def build_dataset(workdir: Path, source: Path, fruit: str, resolution: int, count: int = ALL_REAL) -> None:
    shutil.copytree(source / "rawData", workdir / "rawData", symlinks=True)
    rawDataToImage.convert(dict(workdir=workdir, fruits=[fruit], resolution=resolution, count=count,
                                version=BENCH_VERSION, augment=False, workers=1, progress=False))
    imageToNPZ.main(["--workdir", str(workdir), "--yes", "--version", BENCH_VERSION])


def run_recipe(workdir: Path, name: str, fruit: str, epochs: int) -> dict:
    cfg = TrainConfig(dataset_version=BENCH_VERSION, model_name=f"bench_{name}", epochs=epochs, fruits=[fruit],
                      device="cpu", milestones=[epochs], keep_checkpoint_every=0, **RECIPES[name])
    started = time.perf_counter()
    summary = MultiFruitGANTrainer(cfg, workdir, log=lambda _: None).train()[fruit]
    best = summary.get("best_quality") or summary.get("quality") or {}
    return {"recipe": name, "minutes": (time.perf_counter() - started) / 60, **best}


def _cell(row: dict, key: str, spec: str) -> str:
    value = row.get(key)
    if isinstance(value, (int, float)):
        return format(value, spec)
    note = row.get({"two_sample_accuracy": "two_sample_note", "memorisation_ratio": "memorisation_note",
                    "recognizability": "recognizability_note"}.get(key, ""))
    return "n/a*" if note else "-"


def format_table(rows: Sequence[dict]) -> str:
    header = f"{'recipe':<14}{'2-sample':>10}{'memo.':>8}{'recognised':>12}{'minutes':>9}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['recipe']:<14}{_cell(r, 'two_sample_accuracy', '.2f'):>10}"
                     f"{_cell(r, 'memorisation_ratio', '.2f'):>8}{_cell(r, 'recognizability', '.0%'):>12}"
                     f"{r['minutes']:>9.1f}")
    notes = {r.get("two_sample_note") or r.get("recognizability_note") for r in rows} - {None}
    lines += [f"* {n}" for n in sorted(notes)]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_quality.py", description=__doc__.splitlines()[0])
    p.add_argument("--fruit", default="apple", type=cli_value(choice_of(FRUITS), "--fruit"),
                   help="the fruit to train, on every real drawing it has (default: apple)")
    p.add_argument("--resolution", default=28, type=cli_value(st.parse_resolution, "--resolution"),
                   help="image side; 28 uses the 28x28 bitmaps, the most real drawings (default: 28)")
    p.add_argument("--count", default=ALL_REAL, type=cli_value(int_in_range(1, st.COUNT_MAX), "--count"),
                   help="use only the first N real drawings, split as a dataset of N would be (default: all)")
    p.add_argument("--epochs", default=st.EPOCHS.default, type=cli_value(int_in_range(1, st.EPOCHS_MAX), "--epochs"),
                   help=f"epochs per recipe (default: {st.EPOCHS.default})")
    p.add_argument("--recipes", default=",".join(RECIPES), type=cli_value(list_of(list(RECIPES), "recipe"), "--recipes"),
                   help=f"comma-separated recipes (default: all: {','.join(RECIPES)})")
    p.add_argument("--workdir", type=Path, default=None, help="folder holding rawData/ (default: the scripts' folder)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    fruit = args.fruit
    source = Path(args.workdir) if args.workdir else default_workdir()
    if not (source / "rawData").is_dir():
        raise UserError(f"no rawData/ in {source}; pass --workdir")
    with tempfile.TemporaryDirectory(prefix="bench_quality_") as tmp:
        work = Path(tmp)
        build_dataset(work, source, fruit, args.resolution, args.count)
        rows = []
        for name in args.recipes:
            rows.append(run_recipe(work, name, fruit, args.epochs))
            print(f"{name}: done in {rows[-1]['minutes']:.1f} min", file=sys.stderr)
    drawings = "every real drawing" if args.count == ALL_REAL else f"the first {args.count} real drawings"
    print(f"{fruit}, {args.resolution} px, {args.epochs} epochs, held-out split of {drawings}")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
