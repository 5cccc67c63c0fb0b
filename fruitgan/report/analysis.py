"""The report's prose that depends on the runs: Markdown computed from their files. The one figure not measured,
the author's opinion of a run's pictures, is read from its hand-written ``author_opinion.json`` (this module owns
the format) and always labelled as opinion."""
from __future__ import annotations

import collections
import json
import math
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from fruitgan.metrics.classifier import load_or_train_recognizer, predict
from fruitgan.report import runs, tables
from fruitgan.report.figures import GRID_GUTTER, milestone_block
from fruitgan.report.runs import Run, number, span

OPINION_FILE = "author_opinion.json"   # {"looked_at": "...", "fruits": {fruit: {"verdict": ..., "seen": ...}}}
NOT_REAL = "does not look real"       # the opinion's verdicts: "looks real", "partly real", NOT_REAL
FLAT_BAND = (32, 224)   # grey levels: a grid with 98% of its pixels inside has no black background, no white stroke
PERCENTILES = (1, 50, 99)
MID_GREY = 128
TAIL_EPOCHS = 20        # the training-curve figures quoted: means over the last epochs
D_WINNING = 0.3         # mean D(G(z)) below this: the discriminator spots most fakes
NOISE_COUNT = 256       # uniform-noise images shown to the recogniser


def opinion(run: Optional[Run]) -> Dict[str, dict]:
    """{fruit: {"verdict", "seen"}}: the author's opinion of this run's pictures, or {} when none is recorded."""
    path = run.folder.path / OPINION_FILE if run else None
    if not path or not path.is_file():
        return {}
    fruits = json.loads(path.read_text()).get("fruits") or {}
    return {f: v for f, v in fruits.items() if isinstance(v, dict) and {"verdict", "seen"} <= set(v)}


def runs_read(run: Run, held: Optional[Run]) -> str:
    def line(r: Run) -> str:
        s = r.summary
        return (f"**{r.name}**: {r.resolution} px, {len(r.fruits)} fruits ({', '.join(r.fruits)}), "
                f"{s.get('epochs_done')} of {s.get('epochs_planned')} epochs, device {s.get('device')}. "
                f"Description: {r.config.get('description') or '(none)'}")
    return "\n".join(["- The run of step 4: " + line(run),
                      "- The held-out run: " + (line(held) if held else "none (no folder at the held-out path)")])


def training_run(run: Run) -> str:
    """4.1: how the run was made: its commands, what they cannot say, and what it trained on."""
    from fruitgan.util import settings

    cfg = run.config
    defaults = [f"{s.flag} {getattr(s, 'default')}" for s in (settings.EPOCHS, settings.BATCH_SIZE)]
    used = "the defaults" if (cfg["epochs"], cfg["batch_size"]) == (settings.EPOCHS.default,
                                                                    settings.BATCH_SIZE.default) else "not the defaults"
    text = (f"Run **{run.name}** trained each fruit for {cfg['epochs']} epochs in batches of {cfg['batch_size']}: "
            f"{used} ({', '.join(defaults)}). It was made by these commands, rebuilt from its saved settings "
            "with every flag that differs from today's defaults:\n\n```\n" + "\n".join(runs.commands(cfg)) + "\n```")
    notes = runs.recipe_notes(cfg)
    if notes:
        text += "\n\n**What the commands cannot say.** " + " ".join(notes)
    return text + "\n\nWhat each fruit trained on:\n\n" + tables.data_table(run)


def epochs_done(run: Run) -> str:
    """4.3: how many epochs ran, and how the two networks ended."""
    s, tail = run.summary, {f: (h.get("epochs") or [])[-TAIL_EPOCHS:] for f, h in run.histories.items()}
    d_real, d_fake = ({f: np.mean([e[k] for e in t]) for f, t in tail.items() if t} for k in ("d_real", "d_fake"))
    text = (f"Run **{run.name}** trained {s.get('epochs_done')} of {s.get('epochs_planned')} epochs "
            f"({s.get('status')}). Over the last {TAIL_EPOCHS} epochs D(x) was {span(d_real.values(), '.2f')} and "
            f"D(G(z)) {span(d_fake.values(), '.2f')}.")
    if d_fake and np.mean(list(d_fake.values())) < D_WINNING:
        text += (" The discriminator was winning: it spots most fakes. That is why the run picks its best "
                 "checkpoint by quality figures, not by D(G(z)) near 0.5.")
    return text


def grey_levels(run: Run, epoch: int) -> Optional[np.ndarray]:
    """The 1st, 50th and 99th percentile grey level of the fakes the run saved at ``epoch`` (None: no grids)."""
    blocks = [b for f in run.fruits if (b := milestone_block(run, f, epoch)) is not None]
    return np.percentile(np.concatenate([b[b != GRID_GUTTER] for b in blocks]), PERCENTILES) if blocks else None


def flat(levels) -> bool:
    return levels is not None and FLAT_BAND[0] <= levels[0] and levels[-1] <= FLAT_BAND[1]


def odd_grids(run: Run, epochs: List[int]) -> str:
    """Beside 4.4: why the first milestone's fakes look as they do (measured on its grids)."""
    levels = grey_levels(run, epochs[0]) if epochs else None
    if not flat(levels):
        return "" if levels is None else f"At epoch {epochs[0]} the fakes already show a black background or strokes."
    (lo, mid, hi), first = levels, epochs[0]
    h = next(iter(run.histories.values()))
    steps = h.get("steps_per_epoch") or math.ceil(h.get("num_train_images", 0) / run.config["batch_size"])
    later = next((e for e in epochs[1:] if not flat(grey_levels(run, e))), None)
    return (f"**Why the epoch-{first} grids are flat grey.** 98% of their pixels lie between {lo:.0f} and {hi:.0f} "
            f"of 255 (median {mid:.0f}): no black background, no white stroke. After {first} epoch(s) each "
            f"generator has taken about {steps * first} steps from its start, where small random weights (DCGAN's "
            "N(0, 0.02)) make tanh give values near 0, mid-grey (step 3). "
            + ("Those steps taught it only that drawings are mostly dark, so the grey darkened. " if mid < MID_GREY
               else "") + "The grids show the moving average of those few steps."
            + (f" By epoch {later} strokes show." if later else ""))


def first_recognised(run: Run) -> str:
    """Beside the quality curves: a fruit 'recognised' at the first milestone, when its fakes were still grey."""
    rows = tables.quality_rows(run)
    shares = {r["fruit"]: r["first"].get("recognizability") for r in rows if number(r["first"].get("recognizability"))}
    high = [f for f, v in shares.items() if v >= 0.5]
    if not high:
        return "At the first milestone no fruit's fakes were recognised as that fruit."
    epoch = rows[0]["first"].get("epoch")
    return (f"**Why {', '.join(high)} is \"recognised\" at epoch {epoch}.** Then the recogniser named "
            + ", ".join(f"{f} {v:.0%}" for f, v in shares.items())
            + f". The fakes were flat grey squares (4.4). The recogniser must name one of the fruits it knows and "
            f"cannot say \"none of these\", so every grey square got the same name: {', '.join(high)}. That says "
            "nothing about quality; only later milestones, with strokes, do.")


def step3_note(pics: np.ndarray, trained: Optional[np.ndarray]) -> str:
    """3.5: what the plot shows, measured on its pictures ((100, R, R) in [0, 1])."""
    between = float(pics.std(axis=0).mean())
    text = (f"- **Untrained** (the generator of 1.8): every pixel lies between {pics.min():.3f} and {pics.max():.3f} "
            "(0 = black, 1 = white), so each picture is flat grey to the eye. Its weights are small and random, so "
            "tanh gives values near 0, mid-grey. Stretched, each shows a speckled texture, not a drawing. A pixel "
            f"changes by {between:.4f} on average from one noise vector to the next.")
    if trained is not None:
        t_between = float(trained.std(axis=0).mean())
        text += (f"\n- **Trained**: pixels span {trained.min():.2f} to {trained.max():.2f}; "
                 f"{float((trained > 0.5).mean()):.0%} are brighter than mid-grey (the strokes). A pixel changes by "
                 f"{t_between:.4f} between noise vectors: each noise vector gives its own drawing.")
    return text


def recognise_noise(root: Path, resolution: int, generated) -> dict:
    """{what: (most common fruit, share, mean top probability)}: the all-fruit recogniser (trained here on the
    bundled drawings, cached in a temporary folder) shown uniform noise and ``generated`` ((N,1,R,R) in [-1,1])."""
    import torch

    with tempfile.TemporaryDirectory() as tmp:      # the recogniser's cache stays out of the repository
        (Path(tmp) / "rawData").symlink_to(Path(root).resolve() / "rawData")
        recogniser, info = load_or_train_recognizer(Path(tmp), "report", resolution)
    if recogniser is None:
        return {"note": info["note"]}
    noise = torch.rand(NOISE_COUNT, 1, resolution, resolution, generator=torch.Generator().manual_seed(1)) * 2 - 1
    out = {}
    for what, images in (("uniform noise", noise), ("the untrained generator's images (step 3)", generated)):
        pred, probs = predict(recogniser, images)
        fruit, n = collections.Counter(recogniser.fruits[i] for i in pred.tolist()).most_common(1)[0]
        out[what] = (fruit, n / len(pred), probs.max(dim=1).values.mean().item())
    return out


def noise_text(noise: dict) -> str:
    if "note" in noise:
        return f"**Noise \"recognised\".** Not measured: {noise['note']}."
    return ("**Noise \"recognised\".** " + " ".join(f"Shown {what}, the recogniser says {fruit} for {share:.0%} of "
                                                   f"them (mean top probability {p:.2f})."
                                                   for what, (fruit, share, p) in noise.items())
            + " A classifier that must choose a fruit is read beside the two-sample test, never alone.")
