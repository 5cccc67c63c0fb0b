"""Full-size data, bounded memory: convert -> pack -> train on Google-sized files, peak memory of each stage.

    python benchmarks/bench_scale.py                         # 7 fruits x 150,000 drawings at 64 px (an hour on 2 cores)
    python benchmarks/bench_scale.py --drawings 5000 --steps 5 --no-eval   # a quick look

The input is SYNTHETIC-FROM-REAL, made here: for each of the seven fruits a simplified ndjson file of
``--drawings`` lines, each a randomly rotated, stretched and jittered copy of one of that fruit's real
drawings in rawData/sample (so point counts and shapes stay realistic), written in Google's format by
quickdraw_formats. Each stage then runs the project's own script in a process of its own, as a user
would, and the benchmark samples that process's memory (with its workers) while it runs:

  convert   rawDataToImage.py --resolution 64 --count N --quality all   (streamed, 2 worker processes)
  pack      imageToNPZ.py                                             (one fruit's images at a time)
  train     train_gan.py --epochs 1 --steps-per-epoch S               (all fruits at once, evaluation on)

It prints drawings (or images) per second and peak RSS of each stage, and for training the bound the
data loader promises: what the data adds to the training peak is at most 1.5 x the datasets' uint8 size. What
it adds is the peak less that of a reference run: the same pipeline and settings on ``--reference-drawings``
per fruit, whose peak holds what does not grow with the data (Python and torch, the networks, a step's
activations, the evaluators).
With evaluation on, it also projects the evaluation's share of a default run on this data from the parts measured.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench_convert import RAM_DIR, PeakRss  # noqa: E402
from bench_header import header  # noqa: E402
from fruitgan.data import quickdraw_formats as qf  # noqa: E402
from fruitgan.util.safe_files import FRUITS  # noqa: E402

SAMPLE = ROOT / "rawData" / "sample"
VERSION = "scale"
RESOLUTION = 64
ROTATION_DEG, STRETCH, JITTER = 15.0, 0.15, 0.01   # each synthetic line is a new drawing: turned, stretched, shaken
BOUND = 1.5                # the promise: the data adds at most 1.5 x its uint8 size to the training peak


@dataclass
class ScaleConfig:
    """What to measure."""

    drawings: int = 150_000       # per fruit (Google's full apple file holds 145k, banana 308k)
    reference_drawings: int = 2_000   # per fruit, for the reference run (0: none); its held-out parts are tested
    steps: int = 50               # training steps of the one epoch
    batch: int = 64
    workers: int = 2
    evaluate: bool = True         # the milestone's quality figures (and their memory) at the end of the epoch
    seed: int = 0
    tmp_dir: Optional[Path] = None
    keep: bool = False


def real_drawings(fruit: str) -> list:
    """The bundled real drawings of ``fruit`` (simplified strokes), each a list of (n, 2) arrays."""
    items = qf.iter_drawings(SAMPLE / qf.SIMPLIFIED / f"{fruit}.ndjson", fruit)
    return [item.strokes for item in items if isinstance(item, qf.Drawing)]


def jittered(strokes: list, rng: np.random.Generator) -> list:
    angle = math.radians(rng.uniform(-ROTATION_DEG, ROTATION_DEG))
    stretch = 1.0 + rng.uniform(-STRETCH, STRETCH)
    turn = np.array([[math.cos(angle) * stretch, math.sin(angle) * stretch], [-math.sin(angle), math.cos(angle)]])
    return [s @ turn + rng.normal(0.0, JITTER * 255.0, s.shape) for s in strokes]


def write_synthetic(raw_dir: Path, drawings: int, seed: int) -> int:
    """rawData/full_simplified_<fruit>.ndjson for every fruit; returns the bytes written."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    total = 0
    for i, fruit in enumerate(FRUITS):
        rng = np.random.default_rng(seed * 1000 + i)
        sources = real_drawings(fruit)
        path = raw_dir / f"full_simplified_{fruit}.ndjson"
        with open(path, "w", encoding="utf-8") as fh:
            for key in range(drawings):
                fh.write(qf.simplified_line(jittered(sources[key % len(sources)], rng), fruit, f"s{i}{key:09d}") + "\n")
        total += path.stat().st_size
    return total


def run_stage(name: str, script: str, args: List[str]) -> dict:
    """One script in its own process; wall seconds, CPU seconds (with its workers) and peak RSS (ditto)."""
    cmd = [sys.executable, str(ROOT / script), *args]
    print(f"$ {' '.join([script, *args])}", flush=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", MPLBACKEND="Agg")
    before = os.times()
    started = time.perf_counter()
    with PeakRss() as rss:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    after = os.times()
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return {"stage": name, "seconds": seconds, "cpu": cpu, "peak": rss.peak, "stdout": proc.stdout}


def uint8_bytes(workdir: Path) -> int:
    """The datasets' pixels as the loader keeps them: N x R x R bytes per fruit (from the NPZ headers)."""
    from fruitgan.data.npz_format import image_shape, list_versions, npz_path

    return sum(math.prod(image_shape(npz_path(workdir, f, VERSION))) for f in list_versions(workdir)[VERSION])


def run_parts(workdir: Path) -> dict:
    """Where the training stage's time went (the run's summary: steps, evaluation, ...)."""
    from fruitgan.models.folder import ModelFolder

    return (ModelFolder.in_workdir(workdir, VERSION).read_summary() or {}).get("time", {})


def default_run_evaluation(workdir: Path, parts: dict, steps: int, batch: int) -> dict:
    """The evaluation's share of a default run on this data (settings.EPOCHS epochs, the default milestones),
    projected from the training stage's measured parts: its seconds per step, one milestone's cheap check (epoch
    1 is a milestone) and the test part's full test, which a run pays once whatever its length; the estimate's
    probe before training is one more check. ``parts``: the stage's time split (run_parts)."""
    from fruitgan.learn.batches import steps_per_epoch
    from fruitgan.learn.config import milestone_epochs
    from fruitgan.models.folder import ModelFolder
    from fruitgan.util import settings

    folder = ModelFolder.in_workdir(workdir, VERSION)
    histories = [folder.read_history(f) or {} for f in FRUITS]
    final = sum((h.get("test_quality") or {}).get("seconds", 0.0) for h in histories)
    check = parts.get("evaluation", 0.0) - final
    epochs = settings.EPOCHS.default
    marks = len(milestone_epochs(settings.MILESTONES.default, epochs))
    run_steps = steps_per_epoch(None, [h.get("num_train_images", 0) for h in histories], batch) * epochs
    step_seconds = parts.get("steps", 0.0) / steps * run_steps
    evaluation = (marks + 1) * check + final
    return {"epochs": epochs, "marks": marks, "check": check, "final": final, "steps": run_steps,
            "step_seconds": step_seconds, "share": evaluation / (step_seconds + evaluation)}


def pipeline(work: Path, drawings: int, cfg: ScaleConfig) -> dict:
    """Synthetic input, then convert, pack and train in ``work``: {"stages", "uint8"}, the train stage with its
    time split ("parts")."""
    shutil.copytree(SAMPLE, work / "rawData" / "sample")
    t0 = time.perf_counter()
    size = write_synthetic(work / "rawData", drawings, cfg.seed)
    print(f"input: {len(FRUITS)} x {drawings} synthetic-from-real drawings, {size / 1e9:.2f} GB of ndjson, "
          f"made in {time.perf_counter() - t0:.0f} s; work folder {work}", flush=True)
    common = ["--workdir", str(work), "--yes"]
    stages = [run_stage("convert", "rawDataToImage.py", [
        *common, "--version", VERSION, "--resolution", str(RESOLUTION), "--count", str(drawings),
        "--quality", "all", "--formats", "simplified", "--workers", str(cfg.workers), "--no-progress",
        "--fruits", ",".join(FRUITS)])]
    stages.append(run_stage("pack", "imageToNPZ.py", [*common, "--version", VERSION]))
    shutil.rmtree(work / "imageData")           # a RAM folder: make room before training
    train = [*common, "--dataset-version", VERSION, "--model-name", VERSION, "--epochs", "1",
             "--steps-per-epoch", str(cfg.steps), "--batch-size", str(cfg.batch), "--keep-checkpoint-every", "0",
             "--seed", str(cfg.seed)] + ([] if cfg.evaluate else ["--no-eval"])
    stages.append(run_stage("train", "train_gan.py", train))
    stages[0]["items"] = stages[1]["items"] = len(FRUITS) * drawings
    stages[2]["items"] = len(FRUITS) * cfg.steps * cfg.batch
    stages[2]["parts"] = run_parts(work)
    return {"stages": stages, "uint8": uint8_bytes(work)}


def run_benchmark(cfg: ScaleConfig) -> dict:
    parent = cfg.tmp_dir if cfg.tmp_dir is not None else (RAM_DIR if RAM_DIR.is_dir() else None)
    work = Path(tempfile.mkdtemp(prefix="bench_scale_", dir=parent))
    try:
        found = pipeline(work / "full", cfg.drawings, cfg)
        parts = found["stages"][2]["parts"]
        projected = default_run_evaluation(work / "full", parts, cfg.steps, cfg.batch) if cfg.evaluate else None
        reference = None
        if cfg.reference_drawings:
            if not cfg.keep:
                shutil.rmtree(work / "full")        # a RAM folder: room for the reference run
            print("reference run (what does not grow with the data):", flush=True)
            ref = pipeline(work / "reference", cfg.reference_drawings, cfg)
            reference = {"drawings": cfg.reference_drawings, "peak": ref["stages"][2]["peak"], "uint8": ref["uint8"]}
        return {**found, "reference": reference, "evaluate": cfg.evaluate, "load": os.getloadavg()[0],
                "projected": projected}
    finally:
        if cfg.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def memory_lines(r: dict) -> List[str]:
    """The training peak against the loader's promise: the data adds at most BOUND x its uint8 size."""
    gib = 1024 ** 3
    train, ref = r["stages"][-1]["peak"], r.get("reference")
    lines = [f"datasets as uint8: {r['uint8'] / gib:.2f} GiB; training peak {train / gib:.2f} GiB"]
    if not ref:
        return lines + ["no reference run (--reference-drawings 0): the data's share of the peak is not measured"]
    added = (train - ref["peak"]) / max(r["uint8"] - ref["uint8"], 1)
    return lines + [
        f"reference run on {len(FRUITS)} x {ref['drawings']} drawings ({ref['uint8'] / gib:.2f} GiB of data): "
        f"training peak {ref['peak'] / gib:.2f} GiB, what does not grow with the data",
        f"the data adds {added:.2f} x its size to the training peak, against the bound {BOUND}: "
        f"{'within' if added <= BOUND else 'OVER'}"]


def format_table(r: dict) -> str:
    gib = 1024 ** 3
    units = {"convert": "drawings", "pack": "images", "train": "images stepped"}
    rows = ["| stage | items | seconds | items/s | CPU s | peak RSS (GiB) |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for s in r["stages"]:
        rows.append(f"| {s['stage']} ({units[s['stage']]}) | {s['items']} | {s['seconds']:.0f} | "
                    f"{s['items'] / s['seconds']:.0f} | {s['cpu']:.0f} | {s['peak'] / gib:.2f} |")
    parts = r["stages"][-1].get("parts") or {}
    if parts.get("steps"):
        rows.append(f"| train, steps only | {r['stages'][-1]['items']} | {parts['steps']:.0f} | "
                    f"{r['stages'][-1]['items'] / parts['steps']:.0f} | | |")
        rows.append("\ntraining stage's time: " + ", ".join(f"{k} {v:.0f} s" for k, v in parts.items() if k != "total")
                    + " (the rest: start-up, loading the data, the classifiers, the estimate)")
    rows += ["", *memory_lines(r),
             f"evaluation {'on' if r['evaluate'] else 'off'}; 1-min load average at the end {r['load']:.2f} on "
             f"{os.cpu_count()} cores"]
    e = r.get("projected")
    if e:
        rows.append(f"a default run on this data ({e['epochs']} epochs, {e['steps']} steps, {e['marks']} milestones), "
                    f"projected from the parts above: steps {e['step_seconds'] / 3600:.1f} h; evaluation "
                    f"{e['marks'] + 1} cheap checks of {e['check']:.0f} s and the test part's full test once "
                    f"({e['final']:.0f} s): {e['share']:.1%} of the run")
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--drawings", type=int, default=ScaleConfig.drawings, help="drawings per fruit")
    p.add_argument("--reference-drawings", type=int, default=ScaleConfig.reference_drawings,
                   help="drawings per fruit of the reference run (0: none)")
    p.add_argument("--steps", type=int, default=ScaleConfig.steps, help="training steps (one epoch)")
    p.add_argument("--batch", type=int, default=ScaleConfig.batch)
    p.add_argument("--workers", type=int, default=ScaleConfig.workers)
    p.add_argument("--no-eval", action="store_true", help="skip the milestone's quality figures")
    p.add_argument("--seed", type=int, default=ScaleConfig.seed)
    p.add_argument("--tmp-dir", type=Path, default=None, help="where the work folder goes (default /dev/shm)")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    a = p.parse_args(argv)
    cfg = ScaleConfig(drawings=a.drawings, reference_drawings=a.reference_drawings, steps=a.steps, batch=a.batch,
                      workers=a.workers, evaluate=not a.no_eval, seed=a.seed, tmp_dir=a.tmp_dir, keep=a.keep)
    print(header("bench_scale.py", argv))
    print(format_table(run_benchmark(cfg)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
