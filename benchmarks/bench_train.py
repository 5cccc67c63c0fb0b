"""Training speed: the plain reference loop against the project's fast multi-fruit path.

Both train 7 fruits' GANs for the same number of steps on the same SYNTHETIC data (random
black/white images; the cost of a GAN step does not depend on what the images show):

(a) reference: the assignment's plan in fp32, a torch DataLoader over a host TensorDataset
    (batch 64, shuffled), fruits one after another, gan_model.train_step;
(b) trainer: the project's MultiFruitGANTrainer (the code train_gan.py runs): its own batching
    from data resident on the device, the fruits stepped together as one grouped network
    (grouped_gan.GroupedGAN), per-epoch statistics with one host sync per epoch. Its synthetic
    dataset is saved as NPZ files in a temporary folder and loaded the way train_gan.py loads one.

Warm-up steps are not timed; on CUDA the clock stops after torch.cuda.synchronize(). Each
measurement runs in a fresh Python process (so one method's allocator or thread-pool state never
helps the other); the methods alternate for --rounds rounds and the fastest round counts (the
machine may be shared). Both see the same batch * steps images per fruit, so one trainer epoch
is exactly the timed steps.

    python benchmarks/bench_train.py --sizes 28,64 --steps 4 --device cpu
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import gan_model as gm  # noqa: E402
from fruitgan.learn import grouped as gg  # noqa: E402
from fruitgan.util import settings  # noqa: E402
from bench_header import header  # noqa: E402
from gan_trainer import MultiFruitGANTrainer  # noqa: E402
from fruitgan.learn.config import TrainConfig, resolve_precision  # noqa: E402
from fruitgan.data.npz_format import PackedFruit, npz_path, write_npz  # noqa: E402
from fruitgan.util.pictures import to_pixels  # noqa: E402
from fruitgan.util.safe_files import FRUITS  # noqa: E402
from fruitgan.util.user_io import UserError, cli_value, choice_of, int_in_range, run_main  # noqa: E402

NUM_FRUITS = 7
BENCH_VERSION = "bench"   # dataset version name of the synthetic data in a temporary workdir
PLAIN_EMA = 0.0          # the steps compared are the assignment's: no moving average of the generator


def plain_config(size: int) -> gm.GANConfig:
    """The assignment's GAN at ``size``: the declared defaults but no moving average (PLAIN_EMA)."""
    return gm.GANConfig(resolution=size, ema_decay=PLAIN_EMA)


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark run."""

    sizes: tuple = (28, 64)        # image sides to measure
    steps: int = 4                 # timed steps per fruit per method
    warmup: int = 1                # untimed steps first (allocations, kernel selection)
    rounds: int = 2                # alternate (a)/(b) this many times; best round counts
    batch: int = 64                # images per fruit per step
    device: str = "cpu"            # "cpu" or "cuda"
    precision: str = settings.PRECISION.default   # trainer only: auto/fp32/bf16 as train_gan.py (reference: fp32)
    compile: bool = False          # trainer: torch.compile the forward passes
    cuda_graph: bool = False       # trainer on CUDA: replay each step as a CUDA graph
    threads: int = 0               # torch CPU threads (0: leave torch's default)
    seed: int = 0


def synthetic_images(num_fruits: int, count: int, resolution: int, seed: int) -> torch.Tensor:
    """SYNTHETIC stand-in data: (F, N, 1, R, R) random pixels at -1 or 1 (no real doodles)."""
    gen = torch.Generator().manual_seed(seed)
    sparse = torch.rand(num_fruits, count, 1, resolution, resolution, generator=gen) < 0.15   # ~stroke density
    return sparse.float() * 2 - 1


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(warm_up: Callable[[], None], run: Callable[[], None], device: torch.device) -> dict:
    """Call warm_up (untimed), then time run: wall seconds and this process's CPU seconds."""
    warm_up()
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    _sync(device)
    return {"seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu}


def run_reference(cfg: gm.GANConfig, data: torch.Tensor, bc: BenchConfig) -> dict:
    """(a) Wall and CPU seconds for bc.steps steps of the plain loop (fruits one after another)."""
    device = torch.device(bc.device)
    gans = [gm.compile_gan(cfg, device) for _ in range(data.shape[0])]
    loaders = [DataLoader(TensorDataset(images), batch_size=bc.batch, shuffle=True, drop_last=True)
               for images in data]
    iters = [iter(loader) for loader in loaders]

    def fruit_step(i: int) -> None:
        try:
            (real,) = next(iters[i])
        except StopIteration:  # next epoch
            iters[i] = iter(loaders[i])
            (real,) = next(iters[i])
        gm.train_step(gans[i], real.to(device), torch.randn(bc.batch, cfg.noise_dim, device=device))

    def steps(n: int) -> None:
        for _ in range(n):
            for i in range(len(gans)):
                fruit_step(i)

    return _timed(lambda: steps(bc.warmup), lambda: steps(bc.steps), device)


def write_synthetic_dataset(workdir: Path, data: torch.Tensor) -> None:
    """Save SYNTHETIC (F, N, 1, R, R) images in [-1, 1] as dataset version BENCH_VERSION (first F fruits)."""
    pixels = to_pixels(data[:, :, 0]).numpy()                                          # (F, N, R, R)
    for fruit, images in zip(FRUITS, pixels):
        n = images.shape[0]
        meta = {"fruit": fruit, "version": BENCH_VERSION, "resolution": images.shape[-1], "count": n,
                "note": "SYNTHETIC benchmark data, not drawings"}
        write_npz(npz_path(workdir, fruit, BENCH_VERSION),
                  PackedFruit(images, np.zeros(n, dtype=bool), np.arange(n, dtype=np.int32), meta))


def run_trainer(cfg: gm.GANConfig, data: torch.Tensor, bc: BenchConfig) -> dict:
    """(b) Wall and CPU seconds for bc.steps steps of MultiFruitGANTrainer (one epoch = bc.steps steps)."""
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        workdir = Path(tmp)
        write_synthetic_dataset(workdir, data)
        config = TrainConfig(dataset_version=BENCH_VERSION, model_name="bench", epochs=1, batch_size=bc.batch,
                             lr=cfg.lr, device=bc.device, seed=bc.seed, precision=bc.precision, evaluate=False,
                             compile=bc.compile, cuda_graph=bc.cuda_graph)
        trainer = MultiFruitGANTrainer(config, workdir, log=lambda _msg: None)
        trainer._build_models()            # what train() does first; the rest of train() writes files
        if len(trainer.groups) != 1:
            raise UserError(f"expected the {data.shape[0]} fruits in one group, got {trainer.groups}")
        group = trainer.groups[0]
        real = torch.stack([trainer.streams[f].images(0) for f in group])            # (F, B, 1, R, R)
        noise = torch.randn(len(group), bc.batch, cfg.noise_dim, device=trainer.device)

        def warm_up() -> None:             # allocations, kernel choice, graph capture
            for _ in range(bc.warmup):
                trainer.models[0].train_step(real, noise)

        # one epoch = bc.steps batches, through the trainer's own batching and statistics
        return _timed(warm_up, lambda: trainer.train_epoch(0, 1), trainer.device)


def step_gflop_per_image(method: str, cfg: gm.GANConfig, batch: int) -> float:
    """Arithmetic of one training step per image (GFLOP, counted by torch.utils.flop_counter on CPU).

    The trainer's grouped generator computes "upsample x2 then 3x3 convolution" as 2x2 sub-pixel
    convolutions on the small image (same result, fewer multiply-adds), so its count is lower.
    """
    from torch.utils.flop_counter import FlopCounterMode

    real = torch.rand(NUM_FRUITS, batch, 1, cfg.resolution, cfg.resolution) * 2 - 1
    noise = torch.randn(NUM_FRUITS, batch, cfg.noise_dim)
    with FlopCounterMode(display=False) as counter:
        if method == "reference":
            for i in range(NUM_FRUITS):
                gm.train_step(gm.compile_gan(cfg, torch.device("cpu")), real[i], noise[i])
        else:
            gg.GroupedGAN(cfg, NUM_FRUITS).train_step(real, noise)
    return counter.get_total_flops() / (NUM_FRUITS * batch) / 1e9


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), model)
    except OSError:
        pass
    return f"{model} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_train.py", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="28,64", help="comma-separated image sides (default 28,64)")
    p.add_argument("--steps", type=cli_value(int_in_range(1, 100000), "--steps"), default=BenchConfig.steps)
    p.add_argument("--warmup", type=cli_value(int_in_range(0, 1000), "--warmup"), default=BenchConfig.warmup)
    p.add_argument("--rounds", type=cli_value(int_in_range(1, 20), "--rounds"), default=BenchConfig.rounds)
    p.add_argument("--batch", type=cli_value(int_in_range(2, 4096), "--batch"), default=BenchConfig.batch)
    p.add_argument("--device", type=cli_value(choice_of(("cpu", "cuda")), "--device"), default="cpu")
    p.add_argument("--precision", type=cli_value(settings.PRECISION.parse, "--precision"),
                   default=BenchConfig.precision,
                   help=f"the trainer's arithmetic: {settings.PRECISION.help} (default {BenchConfig.precision}; "
                        f"the reference is always fp32)")
    p.add_argument("--compile", action="store_true", help="trainer: torch.compile the forward passes")
    p.add_argument("--cuda-graph", action="store_true", help="trainer on CUDA: replay each step as a CUDA graph")
    p.add_argument("--threads", type=cli_value(int_in_range(0, 512), "--threads"), default=0)
    p.add_argument("--only", type=cli_value(choice_of(("both", "reference", "trainer")), "--only"), default="both")
    p.add_argument("--worker", choices=("reference", "trainer"), help=argparse.SUPPRESS)   # one timing, JSON out
    return p


def parse_args(argv: Optional[Sequence[str]]) -> tuple:
    """(BenchConfig, which methods to run, worker method or None)."""
    a = build_parser().parse_args(argv)
    sizes = parse_sizes(a.sizes)
    if a.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is visible to torch; use --device cpu")
    bc = BenchConfig(sizes=sizes, steps=a.steps, warmup=a.warmup, rounds=a.rounds, batch=a.batch, device=a.device,
                     precision=a.precision, compile=a.compile, cuda_graph=a.cuda_graph, threads=a.threads)
    return bc, a.only, a.worker


def parse_sizes(text: str) -> tuple:
    """--sizes "28,64": image sides the networks can train; UserError otherwise."""
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
        for s in sizes:
            plain_config(s)
    except ValueError:
        raise UserError(f"--sizes {text!r}: give whole numbers like 28,64") from None
    return sizes


def measure_in_subprocess(method: str, size: int, argv: Sequence[str], script: str = __file__) -> dict:
    """The JSON timing one method at one size prints, run as ``script --worker method`` in a fresh
    interpreter (this benchmark's own workers by default; bench_run.py passes its own)."""
    cmd = [sys.executable, str(Path(script).resolve()), *argv, "--sizes", str(size), "--worker", method]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"{method} run at {size} px failed: {tail}")
    return json.loads(lines[-1])


def worker(bc: BenchConfig, method: str) -> int:
    """Child process: time one method at bc.sizes[0] and print {"seconds": ...}."""
    size = bc.sizes[0]
    fn = run_reference if method == "reference" else run_trainer
    data = synthetic_images(NUM_FRUITS, bc.batch * bc.steps, size, bc.seed)   # one trainer epoch = bc.steps
    timing = fn(plain_config(size), data, bc)
    print(json.dumps(timing), flush=True)
    return 0


def _drop_flag_value(argv: Sequence[str], flag: str) -> list:
    """argv without ``flag VALUE`` / ``flag=VALUE`` (the parent passes its own per child)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == flag:
            skip = True
        elif not a.startswith(flag + "="):
            out.append(a)
    return out


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    bc, only, worker_method = parse_args(argv)
    if bc.threads:
        torch.set_num_threads(bc.threads)
    torch.manual_seed(bc.seed)
    if worker_method:
        return worker(bc, worker_method)
    methods = ["reference", "trainer"] if only == "both" else [only]
    child_argv = _drop_flag_value(argv, "--sizes")
    print(header("bench_train.py", argv))
    print(f"device: {device_name(bc.device)} | torch {torch.__version__} | {NUM_FRUITS} fruits x batch {bc.batch} | "
          f"{bc.steps} timed steps (+{bc.warmup} warm-up), best of {bc.rounds} rounds | SYNTHETIC data")
    print(f"trainer: precision={bc.precision} ({resolve_precision(bc.precision, torch.device(bc.device))} "
          f"here) compile={bc.compile} cuda_graph={bc.cuda_graph}")
    print("img/s = images per wall-clock second; img/cpu-s = per CPU second of the process (steadier when "
          "the machine is shared)")
    print(f"{'size':>5} {'reference img/s':>16} {'trainer img/s':>14} {'speed-up':>9} | "
          f"{'ref img/cpu-s':>14} {'trainer img/cpu-s':>18} {'speed-up':>9}")
    images = NUM_FRUITS * bc.batch * bc.steps
    flops: dict = {}
    for size in bc.sizes:
        best = {name: {"seconds": float("inf"), "cpu_seconds": float("inf")} for name in methods}
        for _ in range(bc.rounds):
            for name in methods:
                timing = measure_in_subprocess(name, size, child_argv)
                best[name] = {k: min(best[name][k], timing[k]) for k in best[name]}
        cells = []
        for key in ("seconds", "cpu_seconds"):
            ref, fast = (images / best[m][key] if m in best else None for m in ("reference", "trainer"))
            ratio = f"{fast / ref:8.2f}x" if ref and fast else "       -"
            cells.append((f"{ref:.1f}" if ref else "-", f"{fast:.1f}" if fast else "-", ratio))
        (r1, f1, x1), (r2, f2, x2) = cells
        print(f"{size:>5} {r1:>16} {f1:>14} {x1:>9} | {r2:>14} {f2:>18} {x2:>9}", flush=True)
        flops[size] = {m: step_gflop_per_image(m, plain_config(size), bc.batch) for m in methods}
        flops[size]["rate"] = {m: images / best[m]["seconds"] * flops[size][m] for m in methods}
    print("arithmetic (torch.utils.flop_counter, forward + backward of D and G per image) and the rate reached:")
    for size, f in flops.items():
        print(f"{size:>5} " + " | ".join(f"{m}: {f[m]:.3f} GFLOP/img, {f['rate'][m]:.1f} GFLOP/s" for m in methods))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
