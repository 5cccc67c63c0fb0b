"""The two-sample test on cases whose answer is known: can it say "the same" and "different" when it should?

    python benchmarks/bench_two_sample.py            # about 10 minutes on 2 cores
    python benchmarks/bench_two_sample.py --epochs 40 --apple 120 --banana 120   # the tests' sizes, minutes

Every row runs two_sample.two_sample_test (the test train_gan.py reports) at its real settings (unless --epochs
says fewer passes) on REAL drawings of the bundled sample (rawData/sample), or on made-up changes that the row names:

  real vs real         two disjoint sets of Google's 28 px bitmaps: expected 0.5 (nothing to tell apart)
  real vs noise        uniform noise: expected 1.0
  real vs thicker      the same kind of real drawings with every stroke 1 px thicker (made up): a small,
                       real difference the test should see
  real vs shifted      real drawings each moved 1 (or 2) px up, down, left or right (made up): Google's
                       apples reach the second pixel from the edge, so a shift puts ink in the outer ring
  real vs stray ink    real drawings with one white pixel at a random place of the outermost ring (made up)
  ours vs Google's     the 100 simplified drawings drawn by our stroke renderer against 100 of Google's
                       bitmaps: 0.5 would mean our renderer draws like Google's (the style training sees)

The sizes are those a report uses: 200 real drawings is apple's test part, 667 banana's.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench_header import add_threads_flag, header, use_threads  # noqa: E402
from fruitgan.metrics import two_sample as ts  # noqa: E402
from fruitgan.data import quickdraw_formats as qf  # noqa: E402
from fruitgan.data import stroke_render as sr  # noqa: E402
from fruitgan.util.user_io import int_in_range, cli_value, run_main  # noqa: E402

RES = 28
SAMPLE = ROOT / "rawData" / "sample"
ORDER_SEED = 0            # the bitmaps' one fixed shuffle
NOISE_SEED = 1
SHIFT_SEED = 2            # each made-up change draws its own seeded choices
STRAY_SEED = 3


def to_unit(pixels: np.ndarray) -> torch.Tensor:
    """(N, 784) or (N, 28, 28) uint8 -> (N, 1, 28, 28) float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).float().div(127.5).sub(1).reshape(-1, 1, RES, RES)


def bitmaps(fruit: str) -> torch.Tensor:
    """Google's 28 px bitmaps of ``fruit`` in a fixed random order."""
    images = to_unit(np.load(SAMPLE / "bitmap" / f"{fruit}.npy"))
    return images[torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(ORDER_SEED))]


def rendered(fruit: str) -> torch.Tensor:
    """The fruit's simplified drawings, drawn by the project's renderer at 28 px."""
    renderer = sr.StrokeRenderer(RES)
    drawings = [d for d in qf.iter_drawings(SAMPLE / "simplified" / f"{fruit}.ndjson", fruit)
                if isinstance(d, qf.Drawing)]
    return to_unit(np.stack([sr.image_array(renderer.render(d.strokes)) for d in drawings]))


def thicker(images: torch.Tensor) -> torch.Tensor:
    """Every white stroke 1 px thicker (a 2x2 max filter; the background is -1)."""
    return F.pad(F.max_pool2d(images, 2, stride=1), (0, 1, 0, 1), value=-1.0)


def shifted(images: torch.Tensor, pixels: int, seed: int = SHIFT_SEED) -> torch.Tensor:
    """Each image moved ``pixels`` px in one of the four directions (a seeded choice), black shifted in."""
    direction = torch.randint(0, 4, (images.shape[0],), generator=torch.Generator().manual_seed(seed))
    padded = F.pad(images, (pixels,) * 4, value=-1.0)
    out = images.clone()
    for k, (top, left) in enumerate(((pixels, 0), (pixels, 2 * pixels), (0, pixels), (2 * pixels, pixels))):
        out[direction == k] = padded[direction == k][..., top:top + RES, left:left + RES]
    return out


def stray_ink(images: torch.Tensor, seed: int = STRAY_SEED) -> torch.Tensor:
    """Each image with one white pixel at a random place of its outermost 1-px ring."""
    ring = torch.ones(RES, RES, dtype=torch.bool)
    ring[1:-1, 1:-1] = False
    places = torch.nonzero(ring.reshape(-1)).reshape(-1)                       # (4R-4,)
    pick = places[torch.randint(0, places.numel(), (images.shape[0],), generator=torch.Generator().manual_seed(seed))]
    out = images.clone().reshape(images.shape[0], -1)
    out[torch.arange(images.shape[0]), pick] = 1.0
    return out.reshape(images.shape)


def cases(apple_n: int, banana_n: int):
    """(name, expected, real, other) for each row."""
    apples, bananas = bitmaps("apple"), bitmaps("banana")
    noise = torch.rand(apple_n, 1, RES, RES, generator=torch.Generator().manual_seed(NOISE_SEED)) * 2 - 1
    yield f"apple: real vs real ({apple_n} each)", "0.5", apples[:apple_n], apples[apple_n:2 * apple_n]
    yield f"banana: real vs real ({banana_n} each)", "0.5", bananas[:banana_n], bananas[banana_n:2 * banana_n]
    yield f"apple: real vs noise ({apple_n} each)", "1.0", apples[:apple_n], noise
    yield (f"apple: real vs strokes 1 px thicker ({apple_n} each)", "above 0.5", apples[:apple_n],
           thicker(apples[apple_n:2 * apple_n]))
    for px in (1, 2):
        yield (f"apple: real vs shifted {px} px ({apple_n} each)", "above 0.5", apples[:apple_n],
               shifted(apples[apple_n:2 * apple_n], px))
    yield (f"apple: real vs one stray pixel in the outer ring ({apple_n} each)", "above 0.5", apples[:apple_n],
           stray_ink(apples[apple_n:2 * apple_n]))
    for fruit, real in (("apple", apples), ("banana", bananas)):
        ours = rendered(fruit)
        yield (f"{fruit}: our renderer vs Google's bitmaps ({ours.shape[0]} each)", "0.5 if alike",
               real[-ours.shape[0]:], ours)


def format_row(name: str, expected: str, result: dict) -> str:
    figure = result["two_sample_accuracy"]
    interval = f"{result['two_sample_low']:.2f}-{result['two_sample_high']:.2f}"
    verdict = "decided" if result["two_sample_decided"] else "too wide to call"
    return f"| {name} | {expected} | {figure:.3f} | {interval} | {verdict} |"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_two_sample.py", description=__doc__.splitlines()[0])
    p.add_argument("--apple", default=200, type=cli_value(int_in_range(20, 500), "--apple"),
                   help="real apples per side (default: 200, apple's test part)")
    p.add_argument("--banana", default=667, type=cli_value(int_in_range(20, 2000), "--banana"),
                   help="real bananas per side (default: 667, banana's test part)")
    p.add_argument("--epochs", default=ts.TWO_SAMPLE_EPOCHS, type=cli_value(int_in_range(1, 1000), "--epochs"),
                   help=f"passes over each fold's training images (default: {ts.TWO_SAMPLE_EPOCHS}, the test's own)")
    add_threads_flag(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    use_threads(args.threads)
    rows = ["| case | expected | two-sample accuracy | 95% interval | verdict |", "| --- | --- | ---: | ---: | --- |"]
    for name, expected, real, other in cases(args.apple, args.banana):
        rows.append(format_row(name, expected, ts.two_sample_test(real, other, epochs=args.epochs)))
        print(rows[-1], file=sys.stderr, flush=True)
    print("the two-sample test (fruitgan.metrics.two_sample) on cases with a known answer")
    print(header("bench_two_sample.py", argv) + "\n")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
