"""Does the generator copy its training drawings? The memorisation ratio, in pixel space, in bounded memory."""
from __future__ import annotations

import math
from typing import Optional

import torch

from fruitgan.metrics.images import (check_same_size, few_cpu_threads, from_pixel_levels, not_enough_real,
                                     quantise_pixels, to_work_resolution)

# The median of 40 distances has a standard error of about 0.2 of their spread; fewer held-out drawings make
# the ratio's denominator unreliable.
MIN_MEMORISATION_HELDOUT = 40
MEMORISATION_MAX_GENERATED = 1000  # generated images compared with the training set at most
NEAREST_CHUNK = 256               # query images per distance block (block = 256 x NEAREST_TRAIN_CHUNK floats)
NEAREST_TRAIN_CHUNK = 4096        # training images per distance block: memory stays a few MB at any data size


def _nearest_distances(queries: torch.Tensor, reference_blocks) -> torch.Tensor:
    """(Q, D) queries, an iterable of (T_i, D) reference blocks -> (Q,) distance to the nearest reference row;
    the reference is walked once, block by block, so it is never held whole."""
    nearest = torch.full((queries.shape[0],), math.inf, dtype=torch.float64)
    queries = queries.double()
    for block in reference_blocks:
        block = block.double()
        block_norms = (block * block).sum(dim=1)                                        # (T,) |b|^2, once a block
        for qs in range(0, queries.shape[0], NEAREST_CHUNK):
            q = queries[qs:qs + NEAREST_CHUNK]
            # The nearest row by the matrix-product form |q|^2 - 2 q.b + |b|^2 (fast, float64), then its exact
            # distance from the differences: an exact copy comes out at exactly 0.
            squared = torch.addmm(block_norms, q, block.T, alpha=-2)                     # (Q, T) less |q|^2
            exact = (q - block[squared.argmin(dim=1)]).norm(dim=1)
            nearest[qs:qs + NEAREST_CHUNK] = torch.minimum(nearest[qs:qs + NEAREST_CHUNK], exact)
    return nearest


def _pixel_vectors(images: torch.Tensor) -> torch.Tensor:
    """(N,1,R,R) in [-1,1], or (N,R,R) uint8 pixels -> (N, r*r) quantised pixels at the work resolution."""
    if images.dtype == torch.uint8:
        images = from_pixel_levels(images).unsqueeze(1)
    return to_work_resolution(quantise_pixels(images)).reshape(images.shape[0], -1)


def memorisation_ratio(generated: torch.Tensor, train: torch.Tensor, heldout_real: torch.Tensor,
                       train_rows: Optional[torch.Tensor] = None) -> dict:
    """Median distance to the nearest TRAINING image of the generated images over that of held-out real ones:
    about 1 is healthy, well below 1 is copying. generated, heldout_real: (N,1,R,R) in [-1,1]; train the same or
    (N,R,R) uint8, of which ``train_rows`` (all by default) are the training images: read a block at a time, a
    full download's training part is never copied whole. Pixels at the work resolution: copying is a
    pixel-level fact, and shrinking forgives a copy moved by a fraction of a pixel. None with a note under
    MIN_MEMORISATION_HELDOUT."""
    train_view = train.unsqueeze(1) if train.dtype == torch.uint8 and train.dim() == 3 else train
    check_same_size(generated=generated, train=train_view, heldout_real=heldout_real)
    rows = torch.arange(train.shape[0]) if train_rows is None else train_rows
    n_held = int(heldout_real.shape[0])
    out = {"memorisation_ratio": None, "memorisation_generated_median": None,
           "memorisation_heldout_median": None, "memorisation_n_heldout": n_held}
    if n_held < MIN_MEMORISATION_HELDOUT:
        return {**out, "memorisation_note": not_enough_real(n_held, MIN_MEMORISATION_HELDOUT)}
    if rows.numel() == 0 or generated.shape[0] == 0:
        return {**out, "memorisation_note": "no training or no generated images to compare"}
    with few_cpu_threads("cpu"):
        queries = torch.cat([_pixel_vectors(generated), _pixel_vectors(heldout_real)])
        blocks = (_pixel_vectors(train[rows[s:s + NEAREST_TRAIN_CHUNK]].cpu())
                  for s in range(0, rows.numel(), NEAREST_TRAIN_CHUNK))
        nearest = _nearest_distances(queries, blocks)
        gen_median = nearest[:generated.shape[0]].median().item()
        held_median = nearest[generated.shape[0]:].median().item()
    out.update(memorisation_generated_median=gen_median, memorisation_heldout_median=held_median)
    if held_median <= 0:
        return {**out, "memorisation_note": "held-out drawings are copies of training drawings: split leaks"}
    out["memorisation_ratio"] = gen_median / held_median
    return out
