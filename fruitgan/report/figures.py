"""The report's pictures, one figure a function; matplotlib is imported when one is drawn (no import side effects)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from fruitgan.data.heldout_split import choose_heldout, validation_mask
from fruitgan.metrics.real_drawings import render_rawdata_fruits
from fruitgan.report.runs import Run, number
from fruitgan.util import pictures
from gan_trainer import GRID_GUTTER, GRID_PAD, GRID_SIDE

REPORT_EPOCHS = (1, 30, 100, 400)   # the assignment's example milestones (4.4)
SHOWN = 16                          # real drawings and fakes shown per fruit: a 4 x 4 block
BLOCK = 4


def show_gray(fig) -> None:
    """A grey-only figure shown as an 8-bit grey PNG: the same picture in a third of the bytes of an RGBA one."""
    import matplotlib.pyplot as plt
    from IPython.display import Image as PNG, display
    from PIL import Image

    raw, png = io.BytesIO(), io.BytesIO()
    fig.savefig(raw, format="png", bbox_inches="tight")
    plt.close(fig)
    Image.open(raw).convert("L").save(png, format="PNG", optimize=True)
    display(PNG(data=png.getvalue()))


def first_real_drawings(root: Path, resolution: int, count: int) -> Dict[str, np.ndarray]:
    """{fruit: (<=count, R, R) uint8}: each fruit's first real drawings in rawData/, as a dataset would draw them."""
    drawn, _ = render_rawdata_fruits(root, resolution, formats={}, max_per_fruit=count)
    return {f: pictures.to_uint8(x) for f, x in drawn.items()}


def heldout_test_drawings(root: Path, fruit: str, real_count: int, resolution: int) -> Optional[np.ndarray]:
    """(K, R, R) uint8: the test part of a dataset of ``real_count`` real drawings of ``fruit`` (heldout_split's
    choice and validation mask); None when rawData/ holds fewer drawings or the count is too small to split."""
    held = choose_heldout(real_count, fruit)
    reals = first_real_drawings(root, resolution, real_count).get(fruit) if len(held) else None
    if reals is None or len(reals) < real_count:
        return None
    return reals[held[~validation_mask(len(held), fruit)]]


def real_pictures(run: Run, root: Path) -> Dict[str, Tuple[np.ndarray, str]]:
    """{fruit: (16 real drawings, what they are)}: the held-out test drawings the run was measured on where it
    has them, else the first real drawings of rawData/ (for a run without a split, drawings it trained on)."""
    first = first_real_drawings(root, run.resolution, SHOWN)
    out = {}
    for f in run.fruits:
        test = heldout_test_drawings(root, f, run.dataset("real_images").get(f, 0), run.resolution)
        if test is not None:
            out[f] = (test[:SHOWN], "test-part drawings")
        elif f in first:
            out[f] = (first[f], "real drawings")
    return out


def shown_epochs(run: Run, wanted: Sequence[int] = REPORT_EPOCHS):
    """The saved milestones nearest to the wanted epochs, each once."""
    available = run.folder.progress_grid_epochs()
    return list(dict.fromkeys(min(available, key=lambda a: abs(a - w)) for w in wanted)) if available else []


def milestone_block(run: Run, fruit: str, epoch: int) -> Optional[np.ndarray]:
    """The first 4 x 4 fakes of the grid the run saved at ``epoch`` (the same fixed noise at every milestone)."""
    from PIL import Image

    path = run.folder.progress_grid_path(fruit, epoch)
    if not path.is_file():
        return None
    grid = np.asarray(Image.open(path))
    cell = grid.shape[1] // GRID_SIDE
    return grid[: cell * BLOCK, : cell * BLOCK]


def real_vs_fake(run: Run, reals: Dict[str, Tuple[np.ndarray, str]]) -> list:
    """Per fruit one row: 16 real drawings, then 16 fakes at each milestone shown. Returns the epochs shown."""
    import matplotlib.pyplot as plt

    epochs, fruits = shown_epochs(run), run.fruits
    fig, axes = plt.subplots(len(fruits), 1 + len(epochs), figsize=(2.2 * (1 + len(epochs)), 2.3 * len(fruits)),
                             squeeze=False)
    for r, f in enumerate(fruits):
        real, what = reals.get(f, (None, "no drawings in rawData/"))
        if real is not None:
            axes[r, 0].imshow(pictures.image_grid(real, BLOCK, GRID_PAD, GRID_GUTTER), cmap="gray", vmin=0, vmax=255)
        for c, e in enumerate(epochs, start=1):
            block = milestone_block(run, f, e)
            if block is not None:
                axes[r, c].imshow(block, cmap="gray", vmin=0, vmax=255)
        for c, label in enumerate([what] + [f"epoch {e}" for e in epochs]):
            axes[r, c].set_xticks([]), axes[r, c].set_yticks([])
            axes[r, c].set_title(label if r == 0 or c == 0 else "", fontsize=10)
        axes[r, 0].set_ylabel(f, fontsize=12)
    fig.suptitle(f"Run '{run.name}', {run.resolution} px: real drawings (left) beside the fakes")
    plt.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    show_gray(fig)
    return epochs


def training_curves(run: Run) -> None:
    """Per fruit: D's and G's loss (top) and D's verdicts D(x), D(G(z)) (bottom) at every epoch."""
    import matplotlib.pyplot as plt

    fruits = run.fruits
    fig, axes = plt.subplots(2, len(fruits), figsize=(2.6 * len(fruits) + 1, 5.5), sharex=True, squeeze=False)
    for c, f in enumerate(fruits):
        ep = run.histories[f].get("epochs") or []
        x = [e["epoch"] for e in ep]
        for row, keys in enumerate((("d_loss", "g_loss"), ("d_real", "d_fake"))):
            for key, label in zip(keys, (("D loss", "G loss"), ("D(x)", "D(G(z))"))[row]):
                axes[row, c].plot(x, [e[key] for e in ep], label=label, lw=0.8)
        axes[1, c].axhline(0.5, color="grey", lw=0.5)
        axes[1, c].set_ylim(0, 1)
        axes[0, c].set_title(f)
        axes[1, c].set_xlabel("epoch")
    axes[0, 0].legend(fontsize=8), axes[1, 0].legend(fontsize=8)
    plt.tight_layout()
    plt.show()


def quality_curves(run: Run) -> None:
    """The share recognised and the Fréchet distance at each milestone, one line per fruit."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    for f, h in run.histories.items():
        for ax, key in zip(axes, ("recognizability", "fid")):
            q = [x for x in h.get("quality") or [] if number(x.get(key))]
            ax.plot([x["epoch"] for x in q], [x[key] for x in q], marker="o", label=f)
    axes[0].set_title("share recognised as the intended fruit"), axes[0].set_ylim(0, 1.05)
    axes[1].set_title("Fréchet distance to the training drawings (lower = closer)"), axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("epoch")
    axes[0].legend(fontsize=8)
    plt.tight_layout()
    plt.show()


def noise_grids(panels: Sequence[Tuple[np.ndarray, str]]) -> None:
    """Step 3's plot: each (100, R, R) array of pictures in [0, 1] as a 10 x 10 grid, side by side."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 5.9), squeeze=False)
    for ax, (pics, title) in zip(axes[0], panels):
        pixels = (np.clip(pics, 0, 1) * 255).round().astype(np.uint8)
        ax.imshow(pictures.image_grid(pixels, 10, GRID_PAD, GRID_GUTTER), cmap="gray", vmin=0, vmax=255)
        ax.set_title(title)
        ax.axis("off")
    plt.tight_layout()
    show_gray(fig)
