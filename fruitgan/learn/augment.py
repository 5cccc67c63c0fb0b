"""Randomness of one training step, drawn per fruit, and DiffAugment of the discriminator's inputs.

A step of one fruit's GAN needs random numbers beyond its noise: the Dropout2d masks and, with DiffAugment on, each
image's shift and cut-out. ``draw_step_random`` draws them from the fruit's own generator in a fixed order, so a
fruit trains exactly alike alone or with other fruits (in any group, on any rank).

DiffAugment (Zhao et al. 2020): every image the discriminator sees, real or fake, in its own step and in the
generator's, is shifted and has a square cut out, both filled with the background (-1, black). The operations are
differentiable, so the generator learns through them, and the discriminator cannot memorise the few real drawings
pixel for pixel (what overfits a GAN trained on a few hundred drawings).

Shapes: F fruits, B images per fruit, G fruits in one pass (F in the grouped layout, 1 in the loop layout), R image
side, K = D_CALLS discriminator passes per step."""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F

from fruitgan.util import settings
BACKGROUND = -1.0            # black: the value a shifted-in or cut-out pixel takes
TRANSLATION_RATIO = 0.125    # shift up to 1/8 of the side each way (DiffAugment's default)
CUTOUT_RATIO = 0.5           # a square of half the side (DiffAugment's default)
# The discriminator runs three times per step: real and fake in its own step, fake in the generator's.
D_CALLS = 3


def policy_ops(policy: str) -> tuple:
    """The operations of a DiffAugment policy ('none', 'translation,cutout', ...); ValueError if unknown."""
    canonical = settings.parse_diff_augment(policy)
    return () if canonical == "none" else tuple(canonical.split(","))


def max_shift(resolution: int) -> int:
    return int(resolution * TRANSLATION_RATIO + 0.5)


def cutout_side(resolution: int) -> int:
    return int(resolution * CUTOUT_RATIO + 0.5)


def dropout_widths(d_channels: int) -> tuple:
    """Channels of the discriminator's three Dropout2d layers (D, 2D, 4D)."""
    return (d_channels, 2 * d_channels, 4 * d_channels)


def random_shapes(cfg, batch: int) -> Dict[str, tuple]:
    """{name: shape} of one fruit's step randomness (draw_step_random) for a config and batch size."""
    shapes = {}
    if cfg.dropout > 0:
        shapes["dropout"] = (D_CALLS, batch, sum(dropout_widths(cfg.d_channels)))
    for op, name in (("translation", "shift"), ("cutout", "cutout")):
        if op in policy_ops(cfg.diff_augment):
            shapes[name] = (D_CALLS, batch, 2)
    return shapes


def draw_step_random(cfg, batch: int, generator: Optional[torch.Generator], device) -> Dict[str, torch.Tensor]:
    """One fruit's random numbers for one step, beyond its noise: {name: (D_CALLS, B, ...)}.

    "dropout": uniforms (K, B, D+2D+4D), one per channel of each Dropout2d layer of each pass (when
    cfg.dropout > 0); "shift": (K, B, 2) whole pixels in [-s, s] (translation); "cutout": (K, B, 2) the
    cut square's top-left corner (cutout). Drawn in this order from ``generator`` (None: torch's global one).
    With cfg.augment_p < 1, one uniform per image and operation then leaves the images it misses untouched:
    their shift becomes 0 and their square moves out of the frame."""
    r, out = cfg.resolution, {}
    for name, shape in random_shapes(cfg, batch).items():
        if name == "dropout":
            out[name] = torch.rand(shape, generator=generator, device=device)
        elif name == "shift":
            s = max_shift(r)
            out[name] = torch.randint(-s, s + 1, shape, generator=generator, device=device)
        else:
            c = cutout_side(r)
            # top-left corner from -c/2 to R - c/2: the square may hang over an edge, as in DiffAugment
            out[name] = torch.randint(-(c // 2), r - c + c // 2 + 1, shape, generator=generator, device=device)
    ops = [k for k in ("shift", "cutout") if k in out]
    if ops and cfg.augment_p < 1:     # drawn last: with every image augmented the stream is as it always was
        missed = torch.rand((D_CALLS, batch, len(ops)), generator=generator, device=device) >= cfg.augment_p
        for i, key in enumerate(ops):  # no shift, or a square wholly outside the frame
            out[key] = out[key].masked_fill(missed[..., i, None], 0 if key == "shift" else r)
    return out


def stack_fruits(per_fruit: Sequence[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """[{name: (K, B, ...)}] for F fruits -> {name: (F, K, B, ...)}."""
    return {k: torch.stack([r[k] for r in per_fruit]) for k in per_fruit[0]} if per_fruit else {}


def call_random(random: Dict[str, torch.Tensor], call: int) -> Dict[str, torch.Tensor]:
    """The numbers of discriminator pass ``call``: {name: (G, B, ...)} from {name: (G, K, B, ...)}."""
    return {k: v[:, call] for k, v in random.items()}


def translate(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Shift each image by whole pixels, background in: x (B, G, R, R), shift (G, B, 2) as (dx, dy), each
    within max_shift(R) (a fixed pad: no host read of the shifts, so CUDA graphs can replay it)."""
    b, g, r, _ = x.shape
    s = max_shift(r)
    padded = F.pad(x, (s, s, s, s), value=BACKGROUND)                          # (B, G, R+2s, R+2s)
    idx = torch.arange(r, device=x.device)
    off = shift.transpose(0, 1).to(x.device)                                   # (B, G, 2)
    rows = (s - off[..., 1, None] + idx).clamp(0, r + 2 * s - 1)               # (B, G, R): source rows
    cols = (s - off[..., 0, None] + idx).clamp(0, r + 2 * s - 1)               # (B, G, R): source columns
    picked = padded.gather(2, rows[..., None].expand(b, g, r, r + 2 * s))      # (B, G, R, R+2s)
    return picked.gather(3, cols[:, :, None, :].expand(b, g, r, r))            # (B, G, R, R)


def cut_out(x: torch.Tensor, corner: torch.Tensor, side: int) -> torch.Tensor:
    """Fill a side x side square of each image with the background: corner (G, B, 2) as (x, y)."""
    r = x.shape[-1]
    idx = torch.arange(r, device=x.device)
    c = corner.transpose(0, 1).to(x.device)                                    # (B, G, 2)
    in_x = (idx >= c[..., 0, None]) & (idx < c[..., 0, None] + side)           # (B, G, R)
    in_y = (idx >= c[..., 1, None]) & (idx < c[..., 1, None] + side)
    square = in_y[..., :, None] & in_x[..., None, :]                           # (B, G, R, R)
    return x.masked_fill(square, BACKGROUND)


def diff_augment(x: torch.Tensor, random: Dict[str, torch.Tensor]) -> torch.Tensor:
    """DiffAugment of one discriminator pass: x (B, G, R, R), random from call_random (no entry: no-op)."""
    if "shift" in random:
        x = translate(x, random["shift"])
    if "cutout" in random:
        x = cut_out(x, random["cutout"], cutout_side(x.shape[-1]))
    return x


def dropout_masks(random: Dict[str, torch.Tensor], p: float, widths: Sequence[int], dtype) -> Optional[list]:
    """Dropout2d masks of one pass from its uniforms (G, B, sum(widths)): per layer (B, G*C, 1, 1), kept
    channels scaled by 1/(1-p) as Dropout2d does; None when the pass has no dropout."""
    u = random.get("dropout")
    if u is None or p <= 0:
        return None
    masks, start = [], 0
    for width in widths:
        keep = (u[..., start:start + width] >= p).to(dtype) / (1.0 - p)        # (G, B, C)
        masks.append(keep.transpose(0, 1).reshape(u.shape[1], -1, 1, 1))      # (B, G*C, 1, 1)
        start += width
    return masks
