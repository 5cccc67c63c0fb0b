"""Does the milestones' cheap check pick the checkpoint the full test would? Both rank a run's kept checkpoints.

At milestones the trainer ranks checkpoints with a cheap two-sample check on the validation part
(the two-sample test at two_sample.CHECK power) and keeps the full test for the test part,
once. Here every kept checkpoint (checkpoints/epoch_NNNN.pt, at the moving average) of a model trained by
bench_quality.py is ranked both ways on the validation part, by scores.quality_score as the trainer ranks it,
and the test part, which chose nothing, measures each one: the cheap pick should measure no worse than the full
test's pick. The dataset is rebuilt from rawData/ exactly as bench_quality.py built it.

    python benchmarks/bench_quality.py --recipes default --seeds 1 --keep-models /tmp/kept   # about 10 min
    python benchmarks/bench_checkpoint_choice.py --kept /tmp/kept --model bench_default --fruit apple
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Dict, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import bench_quality as bq  # noqa: E402
from bench_header import add_threads_flag, header, use_threads  # noqa: E402
from data_loader import load_fruit  # noqa: E402
from fruitgan.learn.milestones import EVAL_SEED_OFFSET, MilestoneQuality, OneGenerator  # noqa: E402
from fruitgan.metrics import scores, two_sample  # noqa: E402
from fruitgan.models import folder as model_store  # noqa: E402
from fruitgan.models.loading import load_generator  # noqa: E402
from fruitgan.util import settings as st  # noqa: E402
from fruitgan.util.safe_files import FRUITS, default_workdir  # noqa: E402
from fruitgan.util.user_io import UserError, choice_of, cli_value, int_in_range, run_main  # noqa: E402

WAYS = ("cheap check", "full test")     # how the validation part ranks: at milestones, and the reference


def _powers() -> Dict[str, two_sample.Power]:
    return dict(zip(WAYS, (two_sample.CHECK, two_sample.FULL)))     # read when called: tests shrink them


def rank_figures(quality: MilestoneQuality, fruit: str, model: OneGenerator, epoch: int) -> Dict[str, dict]:
    """{way: validation figures} of one checkpoint, both on the same fakes, and {"test part": figures}."""
    ds = quality.datasets[fruit]
    powers = _powers()
    fakes = quality.two_sample_fakes([fruit], model, EVAL_SEED_OFFSET + 1, epoch, lambda d: d.validation_index,
                                     powers[WAYS[1]])      # the full test needs the most fakes
    out = {way: quality.heldout_figures(fruit, ds.validation_index, fakes[fruit], power)
           for way, power in powers.items()}
    return {**out, "test part": quality.test_figures(fruit, model, epoch)}


def _figure(f: dict) -> str:
    acc = f.get("two_sample_accuracy")
    return "n/a" if acc is None else f"{acc:.3f} [{f['two_sample_low']:.2f}-{f['two_sample_high']:.2f}]"


def format_choice(rows: Dict[int, Dict[str, dict]]) -> str:
    """A table of each checkpoint's figures, then each way's pick and what the test part says of it."""
    lines = ["| epoch | " + " | ".join(f"{w} (validation)" for w in WAYS) + " | test part |",
             "| ---: | ---: | ---: | ---: |"]
    lines += [f"| {e} | " + " | ".join(_figure(r[w]) for w in (*WAYS, "test part")) + " |" for e, r in rows.items()]
    picks = {w: max(rows, key=lambda e: scores.quality_score(rows[e][w])) for w in WAYS}
    lines.append("")
    lines += [f"* {w} picks epoch {e}: test part {_figure(rows[e]['test part'])}" for w, e in picks.items()]
    cheap, full = (rows[picks[w]]["test part"].get("two_sample_accuracy") for w in WAYS)
    if cheap is not None and full is not None:
        lines.append(f"* the cheap pick measures {cheap - full:+.3f} against the full test's pick on the test part "
                     "(lower is better)")
    return "\n".join(lines)


def measure(work: Path, model: str, fruit: str) -> Dict[int, Dict[str, dict]]:
    """{epoch: figures} of every kept checkpoint of ``model`` (in ``work``/models) for ``fruit``."""
    folder = model_store.open_model(work, model)
    epochs = folder.saved_epochs()
    if not epochs:
        raise UserError(f"model {model!r} kept no checkpoints/epoch_NNNN.pt to rank; train it with "
                        "--keep-checkpoint-every")
    config = folder.read_config() or {}
    if not isinstance(config.get("dataset_version"), str):
        raise UserError(f"model {model!r} has no readable training config; pass a model bench_quality.py kept")
    ds = load_fruit(work, config["dataset_version"], fruit)
    if not ds.has_split:
        raise UserError(f"{fruit} has no held-out split in this dataset ({ds.split_note})")
    quality = MilestoneQuality(work, config["dataset_version"], {fruit: ds}, [fruit], torch.device("cpu"),
                               config.get("seed", 0), st.EVAL_SAMPLES.default)
    return {e: rank_figures(quality, fruit, OneGenerator(load_generator(work, model, fruit, e)[0]), e)
            for e in epochs}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_checkpoint_choice.py", description=__doc__.splitlines()[0])
    p.add_argument("--kept", type=Path, required=True, help="the --keep-models folder of a bench_quality.py run")
    p.add_argument("--model", default="bench_default", help="the kept model (default: bench_default)")
    p.add_argument("--fruit", default="apple", type=cli_value(choice_of(FRUITS), "--fruit"))
    p.add_argument("--resolution", default=28, type=cli_value(st.parse_resolution, "--resolution"),
                   help="as the bench_quality.py run was given (default: 28)")
    p.add_argument("--count", default=bq.ALL_REAL, type=cli_value(int_in_range(1, st.COUNT_MAX), "--count"),
                   help="as the bench_quality.py run was given (default: all)")
    p.add_argument("--workdir", type=Path, default=None, help="folder holding rawData/ (default: the scripts' folder)")
    add_threads_flag(p, "")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    use_threads(args.threads)
    source = Path(args.kept) / model_store.model_folder_name(args.model)
    if not source.is_dir():
        raise UserError(f"no model {args.model!r} in {args.kept}; pass the --keep-models folder and --model")
    with tempfile.TemporaryDirectory(prefix="bench_choice_") as tmp:
        work = Path(tmp)
        bq.build_dataset(work, Path(args.workdir) if args.workdir else default_workdir(), args.fruit,
                         args.resolution, args.count)
        shutil.copytree(source, model_store.ModelFolder.in_workdir(work, args.model).path)
        rows = measure(work, args.model, args.fruit)
    print(f"{args.fruit}, model {args.model}: every kept checkpoint ranked on the validation part both ways")
    print(header("bench_checkpoint_choice.py", argv) + "\n")
    print(format_choice(rows))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
