"""What gives the fakes away? The two-sample test on a model's fakes, with one kind of detail removed from both sets.

    python benchmarks/bench_giveaway.py --workdir W --model heldout --fruit apple    # about 4 minutes per row

A trained model's best checkpoint draws as many fakes as the fruit's test part holds real drawings (the
drawings that chose nothing). Each row runs two_sample.two_sample_test at its real settings on the two
sets after the SAME change to both:

  as drawn          nothing removed: the figure the model table reports (other fakes, same test)
  faint ink off     pixels darker than FAINT_LEVEL (of 255) set to black: faint haze around strokes
  black and white   every pixel black or white at mid-grey: no grey levels, the shapes only
  half size         each 2x2 block averaged (28 -> 14 px): no fine detail, the coarse shape only

If a row scores far lower than "as drawn", what it removed is much of what gives the fakes away. A pixel
table beside it says how the two sets use grey levels.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench_header import add_threads_flag, header, use_threads  # noqa: E402
import data_loader  # noqa: E402
from fruitgan.metrics import images as mi  # noqa: E402
from fruitgan.metrics import two_sample as ts  # noqa: E402
import gan_model  # noqa: E402
from fruitgan.models import folder as model_store, loading  # noqa: E402
from fruitgan.util.safe_files import FRUITS, default_workdir  # noqa: E402
from fruitgan.util.user_io import UserError, choice_of, cli_value, run_main  # noqa: E402

FAINT_LEVEL = 16          # of 255: darker pixels count as faint ink (real strokes' anti-aliased rims are brighter)
FULL_LEVEL = 240          # of 255: brighter pixels count as full ink
NOISE_SEED = 2024         # the fakes' noise: its own stream, not the trainer's evaluation noise


def faint_off(images: torch.Tensor) -> torch.Tensor:
    px = mi.pixel_levels(images)
    return mi.from_pixel_levels(torch.where(px < FAINT_LEVEL, torch.zeros_like(px), px))


def black_and_white(images: torch.Tensor) -> torch.Tensor:
    return torch.where(mi.pixel_levels(images) >= mi.PIXEL_LEVELS / 2.0, 1.0, -1.0)


def half_size(images: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(mi.quantise_pixels(images), 2)


CHANGES: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "as drawn": mi.quantise_pixels, "faint ink off": faint_off, "black and white": black_and_white,
    "half size": half_size,
}


def pixel_shares(images: torch.Tensor) -> dict:
    """Share of pixels that are black, faint, grey and full ink."""
    px = mi.pixel_levels(images)
    return {"black": float((px == 0).float().mean()),
            "faint": float(((px > 0) & (px < FAINT_LEVEL)).float().mean()),
            "grey": float(((px >= FAINT_LEVEL) & (px < FULL_LEVEL)).float().mean()),
            "full": float((px >= FULL_LEVEL).float().mean())}


def test_part_and_fakes(workdir: Path, model: str, fruit: str) -> tuple:
    """(real test-part drawings, as many fakes from the model's best checkpoint, the dataset version)."""
    folder = model_store.open_model(workdir, model)
    config = folder.read_config() or {}
    version = config.get("dataset_version")
    if not isinstance(version, str):
        raise UserError(f"model {model!r} names no dataset version in its config; train it with train_gan.py")
    ds = data_loader.load_fruit(workdir, version, fruit)
    if not ds.has_split:
        raise UserError(f"{fruit} of dataset version {version} has no held-out test part: {ds.split_note}")
    real = ds.images_at(ds.sample_index(ds.test_index, ts.TWO_SAMPLE_MAX_REAL))
    net, _ = loading.read_generator(folder, fruit, best=True)
    noise = torch.randn(real.shape[0], net.config.noise_dim, generator=torch.Generator().manual_seed(NOISE_SEED))
    return real, gan_model.generate(net, noise).float(), version


def format_pixels(real: torch.Tensor, fakes: torch.Tensor) -> str:
    rows = [f"| pixels | black (0) | faint (1-{FAINT_LEVEL - 1}) | grey ({FAINT_LEVEL}-{FULL_LEVEL - 1}) | "
            f"full ink ({FULL_LEVEL}-255) |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, images in (("real (test part)", real), ("fakes", fakes)):
        s = pixel_shares(images)
        rows.append(f"| {name} | {s['black']:.1%} | {s['faint']:.1%} | {s['grey']:.1%} | {s['full']:.1%} |")
    return "\n".join(rows)


def format_row(change: str, result: dict) -> str:
    interval = f"{result['two_sample_low']:.2f}-{result['two_sample_high']:.2f}"
    return f"| {change} | {result['two_sample_accuracy']:.3f} | {interval} |"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_giveaway.py", description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=None, help="folder holding models/ and npzData/")
    p.add_argument("--model", required=True, help="a trained model's name (models/model_<name>)")
    p.add_argument("--fruit", default="apple", type=cli_value(choice_of(list(FRUITS)), "--fruit"),
                   help="a fruit with a held-out test part (default: apple)")
    add_threads_flag(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    use_threads(args.threads)
    workdir = Path(args.workdir) if args.workdir else default_workdir()
    real, fakes, version = test_part_and_fakes(workdir, args.model, args.fruit)
    rows = ["| both sets | two-sample accuracy | 95% interval |", "| --- | ---: | ---: |"]
    for change, apply in CHANGES.items():
        rows.append(format_row(change, ts.two_sample_test(apply(real), apply(fakes))))
        print(rows[-1], file=sys.stderr, flush=True)
    print(f"model {args.model}, {args.fruit}: best checkpoint against the test part of dataset version {version} "
          f"({real.shape[0]} real drawings, as many fakes)")
    print(header("bench_giveaway.py", argv) + "\n")
    print("\n".join(rows) + "\n\n" + format_pixels(real, fakes))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
