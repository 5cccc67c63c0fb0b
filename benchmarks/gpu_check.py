"""What a session lent a GPU runs first, in one call: the CUDA paths' tests, training speed, a quality sweep.

    python benchmarks/gpu_check.py                 # on the GPU machine: about 8 minutes on one H100/H200
    python benchmarks/gpu_check.py --tiny          # anywhere (CI, on a CPU): the same stages at tiny budgets

Stages, each a subprocess whose output is printed as it comes, then one line per stage with its time:
1. tests/test_device_paths.py and tests/test_grouped_gan.py on FRUITGAN_TEST_DEVICE (the grouped step equal to
   the plain one, bf16, CUDA graphs, torch.compile);
2. bench_train.py at 28 and 64 px (the trainer against the plain reference loop);
3. bench_quality.py on apple at 400 epochs, one seed per recipe (test-part figures with intervals): the
   recipes that aim at the shapes (default, no_diffaug, wide), then the default at twice the epochs.
   Not yet in the sweep (not implemented): spectral norm with hinge loss, two learning rates (TTUR), D without
   dropout.
A stage that would start after --budget-minutes is not run, and says so. Paste the output into
docs/performance.md (stages 1-2) and docs/quality.md (stage 3).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_header import header  # noqa: E402
from fruitgan.util.user_io import cli_value, float_in_range, run_main  # noqa: E402

SWEEP_RECIPES = "default,no_diffaug,wide"
FULL_EPOCHS, LONG_EPOCHS = 400, 800
BUDGET_MINUTES = 8.0


def stages(device: str, tiny: bool) -> List[Tuple[str, List[str], dict]]:
    """(name, command, extra environment) of each stage, full or tiny."""
    py, bench = sys.executable, str(ROOT / "benchmarks")
    tests = [py, "-m", "pytest", "-q", "tests/test_device_paths.py"] + ([] if tiny else ["tests/test_grouped_gan.py"])
    speed = ([py, f"{bench}/bench_train.py", "--sizes", "28", "--steps", "1", "--warmup", "0", "--rounds", "1",
              "--batch", "4", "--device", device] if tiny else
             [py, f"{bench}/bench_train.py", "--sizes", "28,64", "--steps", "200", "--rounds", "2",
              "--device", device, "--precision", "auto"] + (["--cuda-graph"] if device == "cuda" else []))
    quality = [py, f"{bench}/bench_quality.py", "--seeds", "1"]
    if tiny:    # pear's 30 drawings, one epoch: the path, not the figure
        sweep = [quality + ["--fruit", "pear", "--count", "30", "--epochs", "1", "--steps-per-epoch", "1",
                            "--recipes", "default"]]
    else:
        sweep = [quality + ["--fruit", "apple", "--epochs", str(FULL_EPOCHS), "--recipes", SWEEP_RECIPES],
                 quality + ["--fruit", "apple", "--epochs", str(LONG_EPOCHS), "--recipes", "default"]]
    env = {"FRUITGAN_TEST_DEVICE": device}
    return ([("device tests", tests, env), ("bench_train", speed, {})]
            + [(f"bench_quality {i + 1}", cmd, {}) for i, cmd in enumerate(sweep)])


def run_stage(cmd: Sequence[str], env: dict) -> int:
    """One stage, its output passed straight through (nothing is buffered: a killed run still shows its tables)."""
    return subprocess.run(list(cmd), cwd=ROOT, env={**os.environ, **env}).returncode


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny budgets (CI on a CPU): checks the stages still run")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: cuda if present")
    p.add_argument("--budget-minutes", default=BUDGET_MINUTES,
                   type=cli_value(float_in_range(0.1, 600.0), "--budget-minutes"),
                   help=f"start no stage after this many minutes (default: {BUDGET_MINUTES:g})")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    print(header("gpu_check.py", argv), flush=True)
    started, summary, failed = time.perf_counter(), [], 0
    for name, cmd, env in stages(device, args.tiny):
        if time.perf_counter() - started > args.budget_minutes * 60:
            summary.append(f"{name}: not run (past --budget-minutes {args.budget_minutes:g})")
            continue
        print(f"\n## {name}: {' '.join(Path(c).name if c.endswith('.py') else c for c in cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        rc = run_stage(cmd, env)
        failed += rc != 0
        summary.append(f"{name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {time.perf_counter() - t0:.0f} s")
    print(f"\n## gpu_check on {device}, {(time.perf_counter() - started) / 60:.1f} min in all")
    print("\n".join(summary))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_main(main))
