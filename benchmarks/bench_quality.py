"""How real do the fakes look, recipe by recipe: train one fruit with each recipe and measure it the same way.

Each recipe is a named set of training settings (TrainConfig fields); each is trained by the project's trainer
(MultiFruitGANTrainer) on one dataset built from rawData/ in a temporary work folder. Its best checkpoint is
chosen on the validation part of the held-out drawings, and the table gives that checkpoint's figures on the
test part (gan_evaluation: two-sample accuracy with its 95% interval, memorisation ratio), which took part in
no choice, and recognisability by the all-fruit recogniser.

    python benchmarks/bench_quality.py --fruit apple --epochs 400 --recipes default,diffaug    # hours on a CPU
    python benchmarks/bench_quality.py --fruit banana --epochs 400                             # all 4000 bitmaps
    python benchmarks/bench_quality.py --fruit banana --steps-per-epoch 11 --recipes r1        # apple's budget
    python benchmarks/bench_quality.py --fruit apple --train-drawings 30 --recipes few_strokes,few_diffaug
    python benchmarks/bench_quality.py --fruit apple --epochs 400 --recipes no_diffaug,default --seeds 3
    python benchmarks/bench_quality.py --epochs 2 --recipes default,no_ema --seeds 1           # a smoke run

Each recipe trains with ``--seeds`` seeds (default 3). The table gives every seed's row, then each recipe's mean
and spread (lowest to highest) of the test-part figure. A recipe is called better or worse than the first one
listed only where the difference of the means exceeds the larger of the two spreads: one seed's luck is not
a finding.

``--train-drawings N`` is the few-drawings regime (the five fruits with 23-40 real drawings): the fruit trains
on N real drawings only, whose strokes are known, and is tested on its full held-out test part. Recipes named
``few_strokes*`` fill the training part up to ``--count`` (default 1000) with stroke-level augmented copies of
those N drawings; the others train on the N alone. Every recipe of the regime takes as many steps per epoch
as the 1000-image dataset would (``--steps-per-epoch``), so they all get the same training budget.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import few_drawings  # noqa: E402
import torch  # noqa: E402
from data_loader import load_fruit  # noqa: E402
from bench_header import add_threads_flag, header, use_threads  # noqa: E402
from fruitgan.data import image_conversion  # noqa: E402
from fruitgan.models import folder as model_store  # noqa: E402
from fruitgan.data import npz_packing  # noqa: E402
from fruitgan.util import settings as st  # noqa: E402
from gan_trainer import MultiFruitGANTrainer  # noqa: E402
from fruitgan.util.safe_files import FRUITS, default_workdir  # noqa: E402
from fruitgan.learn.config import TrainConfig  # noqa: E402
from fruitgan.learn.milestones import MilestoneQuality, OneGenerator  # noqa: E402
from fruitgan.models.loading import load_generator  # noqa: E402
from fruitgan.util.user_io import UserError, choice_of, cli_value, int_in_range, list_of, run_main  # noqa: E402

BENCH_VERSION = "quality"
ALL_REAL = st.COUNT_MAX      # convert every real drawing the fruit has (no augmentation)
DIFFAUG = {"diff_augment": "translation,cutout"}
WIDE = {"g_channels": 256, "d_channels": 64}
# name -> TrainConfig settings (anything not named keeps its declared default; "assignment" is the plain recipe
# the assignment describes: no moving average, no DiffAugment)
RECIPES = {
    "default": {},
    "assignment": {"ema_decay": 0.0, "diff_augment": "none"},
    "no_ema": {"ema_decay": 0.0},
    "previous": {"diff_augment": "none", "g_channels": 128, "d_channels": 32, "ema_decay": 0.999},
    "diffaug": DIFFAUG,
    "translation": {"diff_augment": "translation"},
    "cutout": {"diff_augment": "cutout"},
    "diffaug_p05": {**DIFFAUG, "augment_p": 0.5},   # each operation on half the images, as adaptive augmentation
    "no_diffaug": {"diff_augment": "none"},  # today's recipe without DiffAugment (the moving average kept)
    "wide": WIDE,
    "r1": {"r1_gamma": 0.1},
    "r1_1": {"r1_gamma": 1.0},           # a ten times stronger R1 penalty
    "betas_0.99": {"beta2": 0.99},
    "ema_0.9999": {"ema_decay": 0.9999},
    "lr_1e-4": {"lr": 1e-4},
    "diffaug_wide": {**DIFFAUG, **WIDE},
    "diffaug_r1": {**DIFFAUG, "r1_gamma": 0.1},
    "diffaug_ema_0.9999": {**DIFFAUG, "ema_decay": 0.9999},
    "diffaug_wide_ema_0.9999": {**DIFFAUG, **WIDE, "ema_decay": 0.9999},
    "d_64": {"d_channels": 64},          # a stronger discriminator only (the generator keeps its width)
    "batch_32": {"batch_size": 32},      # twice the steps in the same 400 epochs
    "batch_16": {"batch_size": 16},      # four times the steps
    "fp32": {"precision": "fp32"},
    "bf16": {"precision": "bf16"},
    # the few-drawings regime (--train-drawings): stroke-level augmentation, DiffAugment, both, neither
    "few_plain": {"diff_augment": "none"},
    "few_diffaug": DIFFAUG,
    "few_diffaug_p05": {**DIFFAUG, "augment_p": 0.5},
    "few_strokes": {"diff_augment": "none"},
    "few_strokes_diffaug": DIFFAUG,
}
STROKE_RECIPES = ("few_strokes",)    # recipes whose name starts with one of these train on augmented copies
FEW_COUNT = 1000                     # images of the few-drawings datasets with stroke augmentation


def build_dataset(workdir: Path, source: Path, fruit: str, resolution: int, count: int = ALL_REAL) -> None:
    shutil.copytree(source / "rawData", workdir / "rawData", symlinks=True)
    image_conversion.convert(dict(workdir=workdir, fruits=[fruit], resolution=resolution, count=count,
                                  version=BENCH_VERSION, augment=False, workers=1, progress=False))
    npz_packing.pack(workdir, BENCH_VERSION, progress=False, log=lambda _: None)


def recipe_model(name: str, seed: int = 0) -> str:
    """The model a recipe trains: bench_<recipe> (seed 0) or bench_<recipe>_s<seed>, its dots spelled '_'."""
    return "bench_" + name.replace(".", "_") + (f"_s{seed}" if seed else "")


def is_stroke_recipe(name: str) -> bool:
    return name.startswith(STROKE_RECIPES)


KEEP_EVERY = 50      # epochs between kept generators: bench_checkpoint_choice.py ranks them


def run_recipe(workdir: Path, name: str, fruit: str, epochs: int, version: str = BENCH_VERSION,
               steps_per_epoch: Optional[int] = None, seed: int = 0, last_epoch: bool = False) -> dict:
    cfg = TrainConfig(dataset_version=version, model_name=recipe_model(name, seed), epochs=epochs, fruits=[fruit],
                      device="auto", keep_checkpoint_every=KEEP_EVERY, steps_per_epoch=steps_per_epoch, seed=seed,
                      evaluate=not last_epoch, **RECIPES[name])
    started = time.perf_counter()
    summary = MultiFruitGANTrainer(cfg, workdir, log=lambda _: None).train()[fruit]
    if last_epoch:
        summary = {**summary, "test_quality": last_epoch_figures(workdir, cfg, fruit)}
    run = model_store.ModelFolder.at(model_store.model_dir(workdir, cfg.model_name)).read_summary()
    return table_row(name, summary, (time.perf_counter() - started) / 60, seed, run)


def last_epoch_figures(workdir: Path, cfg: TrainConfig, fruit: str) -> dict:
    """The run's last epoch (its moving average where kept) measured on the test part, as the trainer measures
    a best checkpoint: the recipe at a fixed budget, with no checkpoint chosen."""
    net, _ = load_generator(workdir, cfg.model_name, fruit, "latest")
    quality = MilestoneQuality(workdir, cfg.dataset_version, {fruit: load_fruit(workdir, cfg.dataset_version, fruit)},
                               [fruit], torch.device("cpu"), cfg.seed, cfg.eval_samples)
    return quality.test_figures(fruit, OneGenerator(net), cfg.epochs) or {}


def table_row(name: str, summary: dict, minutes: float, seed: int = 0, run: Optional[dict] = None) -> dict:
    """One recipe's row from its fruit's training summary (what train() returns, or the summary file holds) and
    the run's summary file: the evaluation's share of the trainer's wall time, and how far off its estimate was."""
    test = summary.get("test_quality") or {}
    best = summary.get("best_quality") or {}
    split, estimate = (run or {}).get("time") or {}, (run or {}).get("estimate") or {}
    share = split["evaluation"] / split["total"] if split.get("total") else None
    off = estimate["seconds"] / estimate["actual_seconds"] - 1 if estimate.get("actual_seconds") else None
    return {"recipe": name, "seed": seed, "minutes": minutes, "evaluation_share": share, "estimate_off": off, "best_epoch": test.get("epoch", summary.get("best_epoch")),
            "recognizability": best.get("recognizability"), "two_sample_note": best.get("val_two_sample_note"),
            **{k: v for k, v in test.items() if k != "epoch"}}


def keep_model(workdir: Path, name: str, dest: Path, seed: int = 0) -> Path:
    """Copy recipe ``name``'s model folder out of the temporary work folder; an existing copy is not overwritten."""
    source = model_store.model_dir(workdir, recipe_model(name, seed))
    target = dest / source.name
    if target.exists():
        raise UserError(f"{target} already exists; pass another --keep-models folder or remove it")
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target)
    return target


def rows_from_kept(kept: Path, fruit: str, recipes: Sequence[str], seeds: int = 1) -> tuple:
    """The rows of recipes kept by an earlier --keep-models run, from their own records, and what each run was.

    A run that stopped part way (a later recipe failed) still kept the recipes it finished: their table is
    read back, never re-measured or edited."""
    rows, dates = [], []
    for name, seed in ((n, s) for n in recipes for s in range(seeds)):
        folder = model_store.ModelFolder.at(kept / model_store.model_folder_name(recipe_model(name, seed)))
        summary = folder.read_summary()
        per_fruit = (summary or {}).get("per_fruit") or {}
        if fruit not in per_fruit:
            raise UserError(f"{folder.path} holds no finished {fruit} run of recipe {name}; "
                            "pass the --keep-models folder of a run that trained it")
        seconds = ((summary.get("time") or {}).get("total") or 0.0)
        rows.append(table_row(name, per_fruit[fruit], seconds / 60, seed, summary))
        dates.append(f"{summary.get('resolution', '?')} px, {summary.get('epochs_done', '?')} epochs, trained "
                     f"{str(summary.get('updated', '?'))[:10]}")
    return rows, sorted(set(dates))


def _cell(row: dict, key: str, spec: str) -> str:
    value = row.get(key)
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else "n/a"


def spreads(rows: Sequence[dict]) -> dict:
    """recipe -> (mean, lowest, highest) of the test part's two-sample accuracy over its seeds (measured ones)."""
    out = {}
    for name in dict.fromkeys(r["recipe"] for r in rows):
        vals = [r["two_sample_accuracy"] for r in rows if r["recipe"] == name
                and isinstance(r.get("two_sample_accuracy"), float)]
        if vals:
            out[name] = (sum(vals) / len(vals), min(vals), max(vals))
    return out


def verdicts(rows: Sequence[dict]) -> List[str]:
    """Each recipe against the first: better (lower) or worse only where the means differ by more than the
    larger spread of the two; one seed has no spread, so it is never called either."""
    stats = spreads(rows)
    if len(stats) < 2:
        return []
    ref, (ref_mean, ref_lo, ref_hi) = next(iter(stats.items()))
    out = []
    for name, (mean, lo, hi) in list(stats.items())[1:]:
        spread, diff = max(ref_hi - ref_lo, hi - lo), mean - ref_mean
        one_seed = sum(r["recipe"] in (ref, name) for r in rows) <= 2
        word = ("not called (one seed each: no spread)" if one_seed else
                "better" if -diff > spread else "worse" if diff > spread else "no difference beyond the spread")
        out.append(f"{name} against {ref}: {diff:+.3f} (spread {spread:.3f}): {word}")
    return out


def format_table(rows: Sequence[dict]) -> str:
    """A markdown table: each recipe's best checkpoint (chosen on validation) measured on the test part, one row
    per seed; then each recipe's mean and spread over its seeds, and the verdicts."""
    lines = ["| recipe | seed | two-sample accuracy (test part) | 95% interval | memorisation | recognised "
             "| epoch measured | evaluation share | estimate off by | minutes |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        interval = (f"{r['two_sample_low']:.2f}-{r['two_sample_high']:.2f}"
                    if isinstance(r.get("two_sample_low"), float) else "n/a")
        lines.append(f"| {r['recipe']} | {r.get('seed', 0)} | {_cell(r, 'two_sample_accuracy', '.3f')} | "
                     f"{interval} | "
                     f"{_cell(r, 'memorisation_ratio', '.2f')} | {_cell(r, 'recognizability', '.0%')} | "
                     f"{r.get('best_epoch') or 'n/a'} | {_cell(r, 'evaluation_share', '.0%')} | "
                     f"{_cell(r, 'estimate_off', '+.0%')} | {r['minutes']:.1f} |")
    notes = {r.get("two_sample_note") or r.get("recognizability_note") for r in rows} - {None}
    lines += [f"\n* {n}" for n in sorted(notes)]
    stats = spreads(rows)
    if stats:
        lines += ["", "| recipe | mean over seeds | spread (lowest-highest) |", "| --- | ---: | ---: |"]
        lines += [f"| {n} | {m:.3f} | {lo:.3f}-{hi:.3f} |" for n, (m, lo, hi) in stats.items()]
    lines += [f"\n* {v}" for v in verdicts(rows)]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_quality.py", description=__doc__.splitlines()[0])
    p.add_argument("--fruit", default="apple", type=cli_value(choice_of(FRUITS), "--fruit"),
                   help="the fruit to train, on every real drawing it has (default: apple)")
    p.add_argument("--resolution", default=28, type=cli_value(st.parse_resolution, "--resolution"),
                   help="image side; 28 uses the 28x28 bitmaps, the most real drawings (default: 28)")
    p.add_argument("--count", default=ALL_REAL, type=cli_value(int_in_range(1, st.COUNT_MAX), "--count"),
                   help="use only the first N real drawings, split as a dataset of N would be (default: all)")
    p.add_argument("--train-drawings", default=None, type=cli_value(int_in_range(1, st.COUNT_MAX), "--train-drawings"),
                   help="the few-drawings regime: train on this many real drawings (with known strokes), test on the "
                        "full held-out test part")
    p.add_argument("--epochs", default=st.EPOCHS.default, type=cli_value(int_in_range(1, st.EPOCHS_MAX), "--epochs"),
                   help=f"epochs per recipe (default: {st.EPOCHS.default})")
    p.add_argument("--recipes", default="default", type=cli_value(list_of(list(RECIPES), "recipe"), "--recipes"),
                   help=f"comma-separated recipes (default: default; known: {','.join(RECIPES)})")
    p.add_argument("--steps-per-epoch", default=None,
                   type=cli_value(int_in_range(1, st.STEPS_PER_EPOCH_MAX), "--steps-per-epoch"),
                   help="steps per epoch of every recipe, e.g. 11 to give banana apple's budget (default: one pass "
                        "over the training part; the few-drawings regime sets its own)")
    p.add_argument("--seeds", default=3, type=cli_value(int_in_range(1, 20), "--seeds"),
                   help="seeds per recipe (0, 1, ...): the spread over seeds decides what is called better "
                        "(default: 3)")
    p.add_argument("--last-epoch", action="store_true",
                   help="no milestone checks: measure each run's last epoch (its moving average) on the test part, "
                        "the recipe at a fixed budget with no checkpoint chosen (default: the best checkpoint, "
                        "chosen on the validation part)")
    add_threads_flag(p, "; two benchmarks side by side: 1 each")
    p.add_argument("--workdir", type=Path, default=None, help="folder holding rawData/ (default: the scripts' folder)")
    p.add_argument("--from-kept", type=Path, default=None,
                   help="train nothing: print the table of --recipes from the model folders an earlier "
                        "--keep-models run kept in this folder (their own records)")
    p.add_argument("--keep-models", type=Path, default=None,
                   help="copy each recipe's model folder (models/model_bench_<recipe>) here before the work folder "
                        "is deleted, to look at or report on (default: keep nothing)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.train_drawings and args.steps_per_epoch:
        raise UserError("--steps-per-epoch does not go with --train-drawings: the few-drawings regime gives every "
                        "recipe the steps of its 1000-image dataset")
    use_threads(args.threads)
    fruit = args.fruit
    if args.from_kept:
        rows, dates = rows_from_kept(Path(args.from_kept), fruit, args.recipes, args.seeds)
        print(f"{fruit}, {'; '.join(dates)}: read back from the recipes' kept model folders")
        print(header("bench_quality.py", argv) + "\n")
        print(format_table(rows))
        return 0
    source = Path(args.workdir) if args.workdir else default_workdir()
    if not (source / "rawData").is_dir():
        raise UserError(f"no rawData/ in {source}; pass --workdir")
    runs = [(n, s) for s in range(args.seeds) for n in args.recipes]   # seed after seed: a stopped run is even
    kept = [Path(args.keep_models) / model_store.model_folder_name(recipe_model(n, s))
            for n, s in runs] if args.keep_models else []
    taken = [k for k in kept if k.exists()]
    if taken:      # said before hours of training, not after
        raise UserError(f"{taken[0]} already exists; pass another "
                        "--keep-models folder or remove it")
    with tempfile.TemporaryDirectory(prefix="bench_quality_") as tmp:
        work = Path(tmp)
        build_dataset(work, source, fruit, args.resolution, args.count)
        steps, versions = args.steps_per_epoch, {}
        if args.train_drawings:
            versions = few_drawings.build(work, fruit, BENCH_VERSION, args.train_drawings, FEW_COUNT,
                                          needs_strokes=any(is_stroke_recipe(n) for n in args.recipes))
            steps = versions["steps_per_epoch"]
        rows = []
        for name, seed in runs:
            version = versions.get("strokes" if is_stroke_recipe(name) else "plain", BENCH_VERSION)
            rows.append(run_recipe(work, name, fruit, args.epochs, version, steps, seed, args.last_epoch))
            if args.keep_models:
                keep_model(work, name, Path(args.keep_models), seed)
            print(f"{name} (seed {seed}): done in {rows[-1]['minutes']:.1f} min, test part "
                  f"{_cell(rows[-1], 'two_sample_accuracy', '.3f')}", file=sys.stderr, flush=True)
    rows.sort(key=lambda r: (args.recipes.index(r["recipe"]), r["seed"]))
    drawings = "every real drawing" if args.count == ALL_REAL else f"the first {args.count} real drawings"
    regime = (f"; trained on {args.train_drawings} real drawings ({versions.get('note', '')})"
              if args.train_drawings else "")
    budget = f", {args.steps_per_epoch} steps per epoch" if args.steps_per_epoch else ""
    budget += ", the last epoch measured" if args.last_epoch else ""
    print(f"{fruit}, {args.resolution} px, {args.epochs} epochs{budget}, held-out split of {drawings}{regime}")
    print(header("bench_quality.py", argv) + "\n")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
