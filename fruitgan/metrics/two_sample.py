"""The headline figure: can a small CNN tell generated images from REAL drawings it never saw?

k-fold classifier two-sample test (C2ST, Lopez-Paz & Oquab 2017): every drawing is labelled once, by a CNN
trained on the other folds, so the accuracy is a binomial count with a Wilson 95% interval. No shift or mirror
augmentation: where a drawing sits in its frame (ink in the outermost ring) can give a fake away. Step budget
calibrated on the 28 px apple generator: 300 steps per fold said 0.67, 1000 said 0.87 (an independent CNN: 0.85).
"""
from __future__ import annotations

import contextlib
import math
from typing import NamedTuple, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from fruitgan.metrics.images import (EVAL_BATCH, check_same_size, not_enough_real, quantise_pixels,
                                     to_work_resolution)
from fruitgan.util.user_io import UserError

TWO_SAMPLE_FOLDS = 4              # every drawing labelled once by a CNN that trained on the other 3/4
TWO_SAMPLE_EPOCHS = 200           # passes over a fold's training images (fewer steps saw far less)
TWO_SAMPLE_MIN_STEPS = 100
TWO_SAMPLE_MAX_STEPS = 1500       # per fold: bounds the time on large held-out parts
TWO_SAMPLE_BATCH = 64             # images per step, half real, half generated
TWO_SAMPLE_LR = 2e-3              # one-cycle peak learning rate
TWO_SAMPLE_WEIGHT_DECAY = 1e-2
TWO_SAMPLE_WIDTH = 16             # first convolution's channels of the two-sample CNN
TWO_SAMPLE_MAX_REAL = 4000        # real drawings used at most (a seeded choice): time stays bounded


class Power(NamedTuple):
    """How hard the test tries: passes over a fold's training images, real drawings used at most."""
    epochs: int
    max_real: int


FULL = Power(TWO_SAMPLE_EPOCHS, TWO_SAMPLE_MAX_REAL)      # the reported figure, measured once on the test part
# At milestones the test only ranks a run's checkpoints, on the validation part: a fifth of the passes on at most
# a quarter of the drawings keeps evaluation under a fifth of a run (bench_checkpoint_choice.py: the same picks).
CHECK = Power(epochs=40, max_real=1000)
TWO_SAMPLE_SEED = 0
CONFIDENCE_Z = 1.959964           # 95% two-sided
# A figure is called only when its interval is this narrow: 0.5 and 0.7 are then told apart.
TWO_SAMPLE_MAX_HALF_WIDTH = 0.1
# Fewest real drawings for a figure at all (the interval is then about +-0.15, said as "too wide to call").
MIN_TWO_SAMPLE_REAL = 20
TWO_SAMPLE_DROPOUT = 0.3


def wilson_interval(correct: int, total: int, z: float = CONFIDENCE_Z) -> Tuple[float, float]:
    """Wilson score interval of a binomial proportion correct/total (95% by default); (0, 1) when total is 0."""
    if total <= 0:
        return 0.0, 1.0
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


class TwoSampleNet(nn.Module):
    """Small CNN for the two-sample test: (B,1,r,r) -> one logit "generated" (B,), for images of side ``side``.

    Convolutions see the drawing; each row's and column's brightest pixel (2r numbers) sees where it sits, which
    an average of convolutions misses (one stray edge pixel: 0.48 without, 0.88 with; bench_two_sample.py).
    """

    def __init__(self, side: int, width: int = TWO_SAMPLE_WIDTH):
        super().__init__()
        c = width
        self.drawing = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1), nn.LeakyReLU(0.2),                         # (B, c, r, r)
            nn.Conv2d(c, c, 3, stride=2, padding=1), nn.LeakyReLU(0.2),               # (B, c, r/2, r/2)
            nn.Conv2d(c, 2 * c, 3, padding=1), nn.LeakyReLU(0.2),                     # (B, 2c, r/2, r/2)
            nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1), nn.LeakyReLU(0.2),       # (B, 2c, r/4, r/4)
            nn.Conv2d(2 * c, 4 * c, 3, padding=1), nn.LeakyReLU(0.2),                 # (B, 4c, r/4, r/4)
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),                                    # (B, 4c)
        )
        # A hidden layer, not the extent straight into the head: the head's one weight per row grew too slowly.
        self.framing = nn.Sequential(nn.Linear(2 * side, 4 * c), nn.LeakyReLU(0.2))    # (B, 2r) -> (B, 4c)
        self.head = nn.Sequential(nn.Dropout(TWO_SAMPLE_DROPOUT), nn.Linear(8 * c, 1))  # (B, 8c) -> (B, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        extent = torch.cat([x.amax(dim=3), x.amax(dim=2)], dim=2).flatten(1)           # (B, 2r)
        return self.head(torch.cat([self.drawing(x), self.framing(extent)], dim=1)).squeeze(1)


def _fold_steps(train_items: int, epochs: int) -> int:
    steps = round(epochs * train_items / TWO_SAMPLE_BATCH)
    return int(min(max(steps, TWO_SAMPLE_MIN_STEPS), TWO_SAMPLE_MAX_STEPS))


def _autocast():
    """bf16 where this CPU multiplies it in hardware (2.2x faster steps, measured), else fp32."""
    from fruitgan.learn.grouped import cpu_has_bf16

    return torch.autocast("cpu", dtype=torch.bfloat16) if cpu_has_bf16() else contextlib.nullcontext()


def two_sample_steps(n_real: int, power: Power, folds: int = TWO_SAMPLE_FOLDS) -> int:
    """Training steps the test at ``power`` takes for ``n_real`` real drawings (and as many fakes), every fold."""
    n = min(int(n_real), power.max_real)
    per_fold = 2 * (n - n // folds)                       # both sets' images outside one fold (about)
    return folds * _fold_steps(per_fold, power.epochs) if n >= MIN_TWO_SAMPLE_REAL else 0


def _train_two_sample_net(real: torch.Tensor, fake: torch.Tensor, seed: int, epochs: int) -> TwoSampleNet:
    gen = torch.Generator().manual_seed(seed)
    steps = _fold_steps(real.shape[0] + fake.shape[0], epochs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TwoSampleNet(real.shape[-1])
        opt = torch.optim.AdamW(model.parameters(), lr=TWO_SAMPLE_LR, weight_decay=TWO_SAMPLE_WEIGHT_DECAY)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, TWO_SAMPLE_LR, total_steps=steps)
        half = TWO_SAMPLE_BATCH // 2
        target = torch.cat([torch.zeros(half), torch.ones(half)])
        model.train()
        for _ in range(steps):
            x = torch.cat([real[torch.randint(0, real.shape[0], (half,), generator=gen)],
                           fake[torch.randint(0, fake.shape[0], (half,), generator=gen)]])
            with _autocast():          # the forward pass only: a net built under autocast learnt nonsense
                logits = model(x)
            loss = F.binary_cross_entropy_with_logits(logits.float(), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


@torch.no_grad()
def _says_generated(model: TwoSampleNet, images: torch.Tensor) -> torch.Tensor:
    with _autocast():
        return torch.cat([model(images[s:s + EVAL_BATCH]).float() > 0 for s in range(0, images.shape[0], EVAL_BATCH)])


def two_sample_test(real_heldout: torch.Tensor, fake: torch.Tensor, folds: int = TWO_SAMPLE_FOLDS,
                    seed: int = TWO_SAMPLE_SEED, epochs: int = TWO_SAMPLE_EPOCHS) -> dict:
    """How often a small CNN tells ``fake`` (M,1,R,R) from ``real_heldout`` (N,1,R,R), both in [-1,1].

    n = min(N, M, TWO_SAMPLE_MAX_REAL) of each (a seeded choice), on 8-bit levels at the work resolution.
    "two_sample_accuracy" (0.5 = indistinguishable), its Wilson interval, "two_sample_n" (2n), "two_sample_decided"
    (half width <= TWO_SAMPLE_MAX_HALF_WIDTH); None with a "two_sample_note" under MIN_TWO_SAMPLE_REAL images.
    """
    check_same_size(real_heldout=real_heldout, fake=fake)
    if folds < 2:
        raise UserError("two_sample_test needs at least two folds")
    n_real, n_fake = int(real_heldout.shape[0]), int(fake.shape[0])
    n = min(n_real, n_fake, TWO_SAMPLE_MAX_REAL)
    out = {"two_sample_accuracy": None, "two_sample_low": None, "two_sample_high": None,
           "two_sample_half_width": None, "two_sample_n": 0, "two_sample_real": 0, "two_sample_decided": False}
    if n_real < MIN_TWO_SAMPLE_REAL:
        return {**out, "two_sample_note": not_enough_real(n_real, MIN_TWO_SAMPLE_REAL)}
    if n < MIN_TWO_SAMPLE_REAL:
        return {**out, "two_sample_note": f"not enough generated images ({n_fake}, need {MIN_TWO_SAMPLE_REAL})"}
    gen = torch.Generator().manual_seed(seed)
    # All the caller's threads (not few_cpu_threads): this CNN is big enough to use two (1.4x), and runs alone.
    real = to_work_resolution(quantise_pixels(real_heldout[torch.randperm(n_real, generator=gen)[:n]]))
    fake = to_work_resolution(quantise_pixels(fake[torch.randperm(n_fake, generator=gen)[:n]]))
    fold_of = torch.arange(n) % folds
    right = 0
    for j in range(folds):
        test, train = fold_of == j, fold_of != j
        model = _train_two_sample_net(real[train], fake[train], seed * folds + j + 1, epochs)
        right += int((~_says_generated(model, real[test])).sum()) + int(_says_generated(model, fake[test]).sum())
    total = 2 * n
    low, high = wilson_interval(right, total)
    half = (high - low) / 2
    out.update(two_sample_accuracy=right / total, two_sample_low=low, two_sample_high=high,
               two_sample_half_width=half, two_sample_n=total, two_sample_real=n, two_sample_epochs=epochs,
               two_sample_decided=half <= TWO_SAMPLE_MAX_HALF_WIDTH)
    if not out["two_sample_decided"]:
        out["two_sample_note"] = (f"too few held-out drawings to call ({n} real: the 95% interval "
                                  f"{low:.2f}-{high:.2f} is wider than +-{TWO_SAMPLE_MAX_HALF_WIDTH})")
    return out
