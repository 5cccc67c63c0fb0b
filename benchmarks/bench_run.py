"""A whole training run, end to end: the plain reference loop against train_gan.py's path.

Both train 7 fruits' GANs for the same epochs on the same SYNTHETIC data (random black/white images,
written as NPZ through npz_format and loaded the way train_gan.py loads a dataset), and both pay for
what a run does besides its steps:

(a) reference: the assignment's plan in fp32: a torch DataLoader per fruit (shuffled), fruits one after
    another (gan_model.train_step), after every epoch a torch.save of both networks and both optimizers
    per fruit, and at each milestone an 8 x 8 progress grid per fruit (PNG);
(b) train_gan.py's path: MultiFruitGANTrainer.train() as train_gan.py calls it: the measured estimate,
    grouped steps, milestones (progress grids, quality evaluation, history plots), checkpoints on the
    time cadence (settings.CHECKPOINT_MINUTES) and at milestones, history/summary/cost files.

Each measurement runs in a fresh Python process, cold (nothing untimed but the imports, the data files
and, for (b), the quality classifier, which train_gan.py caches per dataset version); the methods
alternate for --rounds rounds and the fastest round counts (the machine may be shared: the load
average is printed with the figures). Where the time went comes from each run's own clock
(training_run.RunClock; for (b) the summary's "time").

    python benchmarks/bench_run.py --sizes 28,64 --images 1000 --epochs 4 --rounds 2
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import bench_train as bt  # noqa: E402
from bench_header import header  # noqa: E402
import gan_model as gm  # noqa: E402
from fruitgan.util import pictures  # noqa: E402
from fruitgan.util import settings  # noqa: E402
from gan_trainer import GRID_GUTTER, GRID_PAD, GRID_SIDE, MultiFruitGANTrainer  # noqa: E402
from fruitgan.learn.config import TrainConfig, checkpoint_epochs, milestone_epochs, resolve_precision  # noqa: E402
from fruitgan.learn.run_control import RunClock  # noqa: E402
from fruitgan.util.user_io import cli_value, int_in_range, run_main  # noqa: E402

NUM_FRUITS = bt.NUM_FRUITS
SHOWN_PARTS = ("steps", "checkpoints", "evaluation", "milestone_images", "other", "set-up")   # columns per method
MILESTONE_PARTS = ("evaluation", "milestone_images", "history_writes")   # paid once per milestone


@dataclass(frozen=True)
class RunBench:
    """One whole-run benchmark."""

    sizes: tuple = (28, 64)
    images: int = 1000             # images per fruit (the assignment's default count)
    epochs: int = 4
    milestones: tuple = (1,)       # plus the last epoch, as in the trainer
    batch: int = 64
    eval_samples: int = settings.EVAL_SAMPLES.default
    checkpoint_minutes: float = settings.CHECKPOINT_MINUTES.default
    rounds: int = 2
    threads: int = 0
    seed: int = 0
    project_epochs: int = settings.EPOCHS.default   # the run the measured parts are projected to
    precision: str = settings.PRECISION.default     # the trainer's only; the reference is always fp32


def project(t: dict, method: str, rb: RunBench) -> float:
    """Seconds of a run of rb.project_epochs epochs with the default milestones, from one measured run's parts.

    Set-up is paid once, steps and "other" (loop overhead, history files) per epoch, evaluation,
    images and plots per milestone, checkpoints per epoch (reference) or per checkpoint written
    (trainer: milestones, kept epochs, the end, and one per cadence of step time).
    """
    p, epochs = t["parts"], rb.epochs
    marks = milestone_epochs(rb.milestones, epochs)
    marks_out = milestone_epochs(settings.MILESTONES.default, rb.project_epochs)
    scale = rb.project_epochs / epochs
    steps = p["steps"] * scale
    seconds = (t["seconds"] - p["total"]) + steps + p.get("other", 0.0) * scale
    seconds += sum(p.get(k, 0.0) for k in MILESTONE_PARTS) / len(marks) * len(marks_out)
    if method == "reference":
        return seconds + p["checkpoints"] * scale
    cadence = rb.checkpoint_minutes * 60.0
    keep = settings.KEEP_CHECKPOINT_EVERY.default

    def count(n_epochs: int, n_marks: set, step_seconds: float) -> int:
        by_time = int(step_seconds // cadence) if cadence else n_epochs
        return len(checkpoint_epochs(n_epochs, n_marks, keep)) + by_time

    per_checkpoint = p["checkpoints"] / max(1, count(epochs, marks, p["steps"]))
    return seconds + per_checkpoint * count(rb.project_epochs, marks_out, steps)


def run_reference(size: int, rb: RunBench, outdir: Path) -> dict:
    """(a) The plain loop for rb.epochs epochs: {"seconds", "parts": {...}}."""
    cfg = bt.plain_config(size)
    data = bt.synthetic_images(NUM_FRUITS, rb.images, size, rb.seed)
    marks = milestone_epochs(rb.milestones, rb.epochs)
    clock = RunClock()
    gans = [gm.compile_gan(cfg, "cpu") for _ in range(NUM_FRUITS)]
    loaders = [DataLoader(TensorDataset(images), batch_size=rb.batch, shuffle=True) for images in data]
    fixed = torch.randn(GRID_SIDE * GRID_SIDE, cfg.noise_dim)
    for epoch in range(1, rb.epochs + 1):
        with clock.part("steps"):
            for gan, loader in zip(gans, loaders):
                for (real,) in loader:
                    gm.train_step(gan, real, torch.randn(real.shape[0], cfg.noise_dim))
        with clock.part("checkpoints"):
            for i, gan in enumerate(gans):
                torch.save({"generator": gan.generator.state_dict(), "discriminator": gan.discriminator.state_dict(),
                            "g_optimizer": gan.g_optimizer.state_dict(), "d_optimizer": gan.d_optimizer.state_dict(),
                            "epoch": epoch}, outdir / f"fruit{i}.pt")
        if epoch in marks:
            with clock.part("milestone_images"):
                for i, gan in enumerate(gans):
                    grid = pictures.image_grid(pictures.to_uint8(gm.generate(gan.generator, fixed)), GRID_SIDE,
                                               GRID_PAD, GRID_GUTTER)
                    grid.save(outdir / f"fruit{i}_epoch{epoch:04d}.png")
    parts = clock.breakdown()
    return {"seconds": parts["total"], "parts": parts}


def run_trainer(size: int, rb: RunBench, workdir: Path) -> dict:
    """(b) MultiFruitGANTrainer.train() for rb.epochs epochs: {"seconds", "parts": the summary's "time"}."""
    data = bt.synthetic_images(NUM_FRUITS, rb.images, size, rb.seed)
    bt.write_synthetic_dataset(workdir, data)
    config = TrainConfig(dataset_version=bt.BENCH_VERSION, model_name="bench", epochs=rb.epochs, batch_size=rb.batch,
                         device="cpu", seed=rb.seed, milestones=list(rb.milestones), eval_samples=rb.eval_samples,
                         checkpoint_minutes=rb.checkpoint_minutes, precision=rb.precision)
    warm = MultiFruitGANTrainer(TrainConfig(**{**config.to_dict(), "model_name": "classifier"}), workdir,
                                log=lambda _m: None)
    warm.quality.setup(warm.states)   # train_gan.py caches the classifier per dataset version: not timed
    trainer = MultiFruitGANTrainer(config, workdir, log=lambda _m: None)
    clock = RunClock()
    trainer.train()
    seconds = clock.elapsed()
    summary = trainer.store.read_summary()
    return {"seconds": seconds, "parts": summary["time"], "estimate": summary["estimate"]["seconds"]}


def parse_args(argv: Optional[Sequence[str]]) -> tuple:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="28,64", help="comma-separated image sides (default 28,64)")
    p.add_argument("--images", type=cli_value(int_in_range(2, 100000), "--images"), default=RunBench.images,
                   help=f"images per fruit (default {RunBench.images})")
    p.add_argument("--epochs", type=cli_value(int_in_range(1, 10000), "--epochs"), default=RunBench.epochs,
                   help=f"epochs per method (default {RunBench.epochs})")
    p.add_argument("--milestones", type=cli_value(settings.parse_milestones, "--milestones"), default=[1],
                   help="epochs with progress grids (+ evaluation in the trainer); the last is added (default 1)")
    p.add_argument("--batch", type=cli_value(int_in_range(1, 4096), "--batch"), default=RunBench.batch,
                   help=f"images per fruit per step (default {RunBench.batch})")
    p.add_argument("--eval-samples", type=cli_value(int_in_range(settings.EVAL_SAMPLES_MIN,
                                                                  settings.EVAL_SAMPLES_MAX), "--eval-samples"),
                   default=RunBench.eval_samples,
                   help=f"generated images per fruit per evaluation (default {RunBench.eval_samples})")
    p.add_argument("--checkpoint-minutes", type=cli_value(settings.CHECKPOINT_MINUTES.parse, "--checkpoint-minutes"),
                   default=RunBench.checkpoint_minutes,
                   help=f"the trainer's checkpoint cadence (default {RunBench.checkpoint_minutes})")
    p.add_argument("--rounds", type=cli_value(int_in_range(1, 20), "--rounds"), default=RunBench.rounds,
                   help=f"alternate the methods this many times; the best round counts (default {RunBench.rounds})")
    p.add_argument("--threads", type=cli_value(int_in_range(0, 512), "--threads"), default=0,
                   help="torch CPU threads (default 0: torch's own choice)")
    p.add_argument("--project-epochs", type=cli_value(int_in_range(1, settings.EPOCHS_MAX), "--project-epochs"),
                   default=RunBench.project_epochs,
                   help=f"also print both runs projected to this many epochs (default {RunBench.project_epochs})")
    p.add_argument("--precision", type=cli_value(settings.PRECISION.parse, "--precision"),
                   default=RunBench.precision,
                   help=f"the trainer's arithmetic, {settings.PRECISION.help} (default {RunBench.precision}; "
                        f"the reference is always fp32)")
    p.add_argument("--worker", choices=("reference", "trainer"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    sizes = bt.parse_sizes(a.sizes)
    rb = RunBench(sizes=sizes, images=a.images, epochs=a.epochs, milestones=tuple(a.milestones), batch=a.batch,
                  eval_samples=a.eval_samples, checkpoint_minutes=a.checkpoint_minutes, rounds=a.rounds,
                  threads=a.threads, project_epochs=a.project_epochs, precision=a.precision)
    return rb, a.worker


def worker(rb: RunBench, method: str) -> int:
    """Child process: one whole run of ``method`` at rb.sizes[0]; prints its timing as JSON."""
    with tempfile.TemporaryDirectory(prefix="bench_run_") as tmp:
        fn = run_reference if method == "reference" else run_trainer
        timing = fn(rb.sizes[0], rb, Path(tmp))
    print(json.dumps(timing), flush=True)
    return 0


def _load() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _cell(t: dict) -> str:
    parts = t["parts"]
    known = {k: parts.get(k, 0.0) for k in SHOWN_PARTS[:-2]}
    other = parts["total"] - sum(known.values())
    setup = t["seconds"] - parts["total"]          # before the run's own clock: data, models, the estimate
    return " / ".join(f"{v:.1f}" for v in (*known.values(), other, setup))


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rb, worker_method = parse_args(argv)
    if rb.threads:
        torch.set_num_threads(rb.threads)
    torch.manual_seed(rb.seed)
    if worker_method:
        return worker(rb, worker_method)
    child_argv = bt._drop_flag_value(argv, "--sizes")
    print(header("bench_run.py", argv))
    print(f"device: {bt.device_name('cpu')} | torch {torch.__version__} | {NUM_FRUITS} fruits x {rb.images} "
          f"SYNTHETIC images, batch {rb.batch}, {rb.epochs} epochs, milestones "
          f"{sorted(milestone_epochs(rb.milestones, rb.epochs))}, best of {rb.rounds} rounds")
    arithmetic = resolve_precision(rb.precision, torch.device("cpu"))
    print(f"trainer: {arithmetic} (--precision {rb.precision}), evaluation of {rb.eval_samples} images per fruit "
          f"at milestones, checkpoints every {rb.checkpoint_minutes:g} min + milestones + end; reference: fp32, "
          f"torch.save of every fruit every epoch")
    print(f"seconds of a whole run, and where they went: {' / '.join(SHOWN_PARTS)} (images: progress grids "
          f"and history plots; other: the rest of the epoch loop, e.g. the trainer's history files; set-up: "
          f"before the loop, e.g. data, models and the trainer's measured estimate)")
    print(f"{'size':>5} {'reference s':>12} {'trainer s':>10} {'speed-up':>9} | {'reference parts':>40} | "
          f"{'trainer parts':>40} | load avg")
    for size in rb.sizes:
        best: dict = {}
        for _ in range(rb.rounds):
            for name in ("reference", "trainer"):
                t = bt.measure_in_subprocess(name, size, child_argv, script=__file__)
                if name not in best or t["seconds"] < best[name]["seconds"]:
                    best[name] = t
        ref, fast = best["reference"], best["trainer"]
        print(f"{size:>5} {ref['seconds']:>12.2f} {fast['seconds']:>10.2f} {ref['seconds'] / fast['seconds']:>8.2f}x | "
              f"{_cell(ref):>40} | {_cell(fast):>40} | {_load()}", flush=True)
        p = fast["parts"]
        print("      trainer detail: " + ", ".join(f"{k} {p[k]:.1f}s" for k in p if k != "total") +
              f"; its estimate before training: {fast['estimate']:.1f}s", flush=True)
        ref_long, fast_long = project(ref, "reference", rb), project(fast, "trainer", rb)
        print(f"      projected to {rb.project_epochs} epochs with the default milestones (the same parts, "
              f"scaled): reference {ref_long:.1f} s, trainer {fast_long:.1f} s, {ref_long / fast_long:.2f}x "
              f"({ref_long / 3600:.1f} h against {fast_long / 3600:.1f} h)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
