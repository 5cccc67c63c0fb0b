"""The measured estimate a run prints before it trains: steps, milestones and checkpoints, timed here.

Nothing is guessed from a table: a few steps of each group are timed on a throw-away copy of its networks,
one milestone's work (progress grids, quality figures) and one history plot are timed as the run will do
them, and one checkpoint is serialised into memory; each is multiplied by how often the run does it.
The training's random streams are never touched (forked), so an estimated run trains exactly as one that
was not estimated.
"""
from __future__ import annotations

import copy
import io
import tempfile
import time
from pathlib import Path
from typing import Dict

import torch

from fruitgan.learn import augment as gan_augment
from fruitgan.learn.config import checkpoint_epochs, sync

ETA_PROBE_STEPS = 2               # timed steps (on a throw-away copy) for the ETA before training: at least
ETA_PROBE_SECONDS = 2.0           # ... and more until this long has passed (a short burst misjudges a busy CPU)
ETA_PROBE_MAX_STEPS = 30          # ... but never more than this many,
ETA_PROBE_SHARE = 0.01            # ... nor longer than this share of the steps it estimates (short runs)
PARTS = ("steps", "evaluation", "milestone_images", "checkpoints")


def fmt_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def _forked_rng(device: torch.device):
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def probe_may_go_on(elapsed: float, timed: int, run_steps: int) -> bool:
    """Time more steps while under ETA_PROBE_SECONDS and under ETA_PROBE_SHARE of the run's own steps."""
    return elapsed < min(ETA_PROBE_SECONDS, ETA_PROBE_SHARE * elapsed / timed * run_steps)


class RunEstimate:
    """Times the parts of ``trainer``'s run (a MultiFruitGANTrainer with its models built)."""

    def __init__(self, trainer):
        self.t = trainer

    def epoch_seconds(self, gi: int, epochs: int = 1) -> float:
        """Seconds per epoch of group ``gi`` from steps timed on a throw-away copy, for a run of ``epochs``."""
        t = self.t
        group, probe = t.groups[gi], copy.deepcopy(t.models[gi])
        b, cfg = t.cfg.batch_size, t.gan_config
        with _forked_rng(t.device):
            real = torch.stack([t.streams[f].images(0) for f in group])
            noise = torch.randn(len(group), b, cfg.noise_dim, device=t.device)
            random = gan_augment.stack_fruits([gan_augment.draw_step_random(cfg, b, None, t.device)
                                               for _ in group])
            probe.train_step(real, noise, random)                            # warm-up (allocations, kernels)
            sync(t.device)
            t0, timed = time.perf_counter(), 0
            while timed < ETA_PROBE_STEPS or (timed < ETA_PROBE_MAX_STEPS and probe_may_go_on(
                    time.perf_counter() - t0, timed, t.steps_per_epoch * epochs)):
                probe.train_step(real, noise, random)
                timed += 1
                sync(t.device)
        return (time.perf_counter() - t0) / timed * t.steps_per_epoch

    def _milestone_seconds(self, gi: int) -> dict:
        """One milestone's work for group ``gi``, timed without writing anything; also the figures it
        measured ({fruit: figures}, empty without evaluation), for the plot probe."""
        t = self.t
        t0 = time.perf_counter()
        for image in t.progress_grids(gi):
            image.save(io.BytesIO(), format="PNG")
        images = time.perf_counter() - t0
        evaluation, figures = 0.0, {}
        if t.quality.active:
            t0 = time.perf_counter()
            with _forked_rng(t.device):
                figures = t.quality.figures(t.groups[gi], t.models[gi], t.start_epoch)   # kept nowhere
            evaluation = time.perf_counter() - t0
        return {"milestone_images": images, "evaluation": evaluation, "figures": figures}

    def _plot_seconds(self, last: int, figures: dict) -> float:
        """One history plot as the run will draw it, into a throw-away folder: a stand-in history with a row
        per epoch up to ``last`` and ``figures`` (one fruit's quality figures) at each milestone, since a plot
        with quality panels takes several times as long as the empty one a new run starts with."""
        from fruitgan.learn import plots as training_plots
        t = self.t
        f = t.fruits[0]
        row = {"d_loss": 0.7, "g_loss": 1.0, "d_real": 0.6, "d_fake": 0.4, "seconds": 1.0}
        marks = [e for e in sorted(t.milestones) if e <= last] if figures else []
        stand_in = {**t.states[f].history, "epochs": [{"epoch": e, **row} for e in range(1, last + 1)],
                    "quality": [{**figures, "epoch": e} for e in marks]}
        with tempfile.TemporaryDirectory(prefix="plot_probe_") as tmp:
            training_plots.plot_fruit_history(t.states[f].history, Path(tmp) / "warm_up.png")   # the import
            t0 = time.perf_counter()
            training_plots.plot_fruit_history(stand_in, Path(tmp) / "probe.png")
            return time.perf_counter() - t0

    def _checkpoint_seconds(self) -> float:
        """A checkpoint's snapshot and serialisation, into memory."""
        t0 = time.perf_counter()
        torch.save(self.t.checkpoints.snapshot(self.t.start_epoch - 1), io.BytesIO())
        return time.perf_counter() - t0

    def run(self, first: int, last: int) -> dict:
        """Measured estimate of epochs ``first..last``.

        Returns {"per_fruit": {fruit: s}, "parts": {part: s}, "total": s}; a fruit stepped with others
        gets its share of the group's time.
        """
        t = self.t
        epochs = max(0, last - first + 1)
        marks = sum(1 for e in t.milestones if first <= e <= last)
        parts = dict.fromkeys(PARTS, 0.0)
        per_fruit: Dict[str, float] = {}
        probes = [self._milestone_seconds(gi) for gi in range(len(t.groups))]
        figures = next(iter(probes[0]["figures"].values()), {})
        plot = self._plot_seconds(last, figures) if epochs else 0.0
        parts["milestone_images"] += plot                # the all-fruit figure at the end: about one plot's time
        for gi, group in enumerate(t.groups):
            steps = self.epoch_seconds(gi, epochs) * epochs
            probe = probes[gi]
            images = probe["milestone_images"] * marks + plot * len(group) * (marks + 1)
            evaluation = probe["evaluation"] * marks + t.quality.final_seconds(group)
            parts["steps"] += steps
            parts["milestone_images"] += images
            parts["evaluation"] += evaluation
            per_fruit.update({f: (steps + images + evaluation) / len(group) for f in group})
        cadence = t.cfg.checkpoint_minutes * 60.0
        by_time = int(parts["steps"] // cadence) if cadence else epochs
        fixed = sum(1 for e in checkpoint_epochs(last, t.milestones, t.cfg.keep_checkpoint_every) if e >= first)
        parts["checkpoints"] = self._checkpoint_seconds() * min(epochs, fixed + by_time)
        return {"per_fruit": per_fruit, "parts": parts, "total": sum(parts.values())}

    def log(self, estimate: dict, first: int, last: int) -> None:
        t = self.t
        t.log(f"estimated time for epochs {first}-{last} (measured on this machine):")
        for f, seconds in estimate["per_fruit"].items():
            shared = next(g for g in t.groups if f in g)
            note = f" (its share: stepped together with {', '.join(x for x in shared if x != f)})" \
                if len(shared) > 1 else ""
            t.log(f"  {f:<10} {fmt_duration(seconds)}{note}")
        parts = estimate["parts"]
        t.log(f"  checkpoints {fmt_duration(parts['checkpoints'])}; total {fmt_duration(estimate['total'])} "
              f"(steps {fmt_duration(parts['steps'])}, evaluation {fmt_duration(parts['evaluation'])}, "
              f"images and plots {fmt_duration(parts['milestone_images'])})")

