"""The few-drawings regime for bench_quality.py: a fruit trained on N real drawings, tested on its full held-out part.

Five of the seven fruits have only 23-40 real drawings, too few to hold any out, so how well a recipe does with
so few cannot be measured on them. Apple can stand in: it has 1000 real bitmaps (its held-out split: 100
validation, 200 test drawings) and 100 drawings with strokes. The datasets built here train on N of those
stroke drawings (rendered by stroke_render with Google's bitmap geometry; the two-sample test tells the two
styles apart only a little: 0.63 for apple, 0.52 for banana, bench_two_sample.py) and hold out exactly the bitmaps the full dataset holds out, in the same order, so their
validation and test parts are the full dataset's. A stroke drawing that looks like a held-out bitmap (pixel
correlation above TWIN_CORRELATION: the same drawing in both files) is never trained on.

Two versions: "<base>_few_plain" (the N drawings alone) and, when asked, "<base>_few_strokes" (the N plus
stroke-level augmented copies of them up to ``count``), written through npz_format.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

import data_loader
from fruitgan.data import quickdraw_formats as qf
from fruitgan.util import settings as st
from fruitgan.data import stroke_render as sr
from fruitgan.data.npz_format import PackedFruit, npz_path, write_npz

TWIN_CORRELATION = 0.85     # measured: the same drawing rendered by us and by Google correlates 0.96-0.98


def _normalised(images: np.ndarray) -> np.ndarray:
    flat = images.reshape(len(images), -1).astype(np.float64)
    flat -= flat.mean(axis=1, keepdims=True)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-9)


def stroke_drawings(workdir: Path, fruit: str) -> list:
    """The fruit's simplified drawings in rawData/ (the user's files first, then the sample), file order."""
    scan = qf.scan_raw_data(Path(workdir) / "rawData")
    files = [f for f in scan.files_for(fruit) if f.format == qf.SIMPLIFIED]
    return [d for info in files for d in qf.iter_drawings(info.path, fruit, qf.SIMPLIFIED) if isinstance(d, qf.Drawing)]


def build(workdir: Path, fruit: str, base_version: str, n_train: int, count: int, needs_strokes: bool,
          seed: int = 0) -> dict:
    """Write the few-drawings versions next to ``base_version``; returns their names, steps per epoch and a note."""
    base = data_loader.load_fruit(workdir, base_version, fruit)
    held = base.pixels[base.heldout_index].numpy()                               # (H, R, R), base order
    renderer = sr.StrokeRenderer(base.resolution)
    drawings = stroke_drawings(workdir, fruit)
    rendered = np.stack([sr.image_array(renderer.render(d.strokes)) for d in drawings])
    twins = (_normalised(rendered) @ _normalised(held).T).max(axis=1) > TWIN_CORRELATION
    usable = [i for i in range(len(drawings)) if not twins[i]]
    if len(usable) < n_train:
        raise SystemExit(f"{fruit} has {len(usable)} stroke drawings unlike its held-out ones, fewer than {n_train}")
    chosen = usable[:n_train]
    note = (f"{n_train} of its {len(drawings)} stroke drawings, {int(twins.sum())} set aside as twins of "
            f"held-out bitmaps")
    out = {"plain": f"{base_version}_few_plain", "note": note,
           "steps_per_epoch": math.ceil(count / st.BATCH_SIZE.default)}
    _write(workdir, fruit, out["plain"], rendered[chosen], [], held, base)
    if needs_strokes:
        rng = np.random.default_rng(seed)
        copies, sources = [], []
        for k in range(count - n_train):
            source = k % n_train
            image = sr.render_augmented_strokes(renderer, drawings[chosen[source]].strokes, rng)
            copies.append(sr.image_array(image))
            sources.append(source)
        out["strokes"] = f"{base_version}_few_strokes"
        _write(workdir, fruit, out["strokes"], rendered[chosen], list(zip(sources, copies)), held, base)
    return out


def _write(workdir: Path, fruit: str, version: str, train: np.ndarray, copies: list, held: np.ndarray, base) -> None:
    """NPZ: the training drawings, the held-out bitmaps (base order), then augmented copies of training drawings."""
    n_train, n_held = len(train), len(held)
    images = np.concatenate([train, held] + ([np.stack([c for _, c in copies])] if copies else []))
    n = len(images)
    augmented = np.arange(n) >= n_train + n_held
    source = np.arange(n, dtype=np.int32)
    source[n_train + n_held:] = [s for s, _ in copies]
    heldout = np.zeros(n, dtype=bool)
    heldout[n_train:n_train + n_held] = True
    meta = {**base.metadata, "fruit": fruit, "version": version, "count": n, "real_count": n_train + n_held,
            "augmented_count": len(copies), "image_files": [],
            "note": "bench_quality few-drawings regime: stroke drawings for training, Google's bitmaps held out"}
    write_npz(npz_path(workdir, fruit, version), PackedFruit(images.astype(np.uint8), augmented, source, meta, heldout))
    check = data_loader.load_fruit(workdir, version, fruit)
    if not np.array_equal(check.pixels[check.test_index].numpy(), base.pixels[base.test_index].numpy()):
        raise SystemExit(f"{version}: its test part is not the full dataset's")   # the split rule changed
