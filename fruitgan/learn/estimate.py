"""The measured estimate a run prints before it trains: steps, milestones, evaluation and checkpoints,
timed here.

Nothing is guessed from a table: a few steps of each group are timed on a throw-away copy of its networks,
one milestone's progress grids, each fruit's quality figures and the end's test-part figures (evaluation
grows with a fruit's held-out drawings, so fruits of different sizes differ) and one history plot are timed
as the run will do them, and one checkpoint is serialised into memory; each is multiplied by how often the
run does it. Every fruit takes the same steps per epoch, so a group's step time is shared equally. The
training's random streams are never touched (forked), so an estimated run trains exactly as one that was not.
"""
from __future__ import annotations

import copy
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

import gan_model as gm
from fruitgan.learn import augment as gan_augment
from fruitgan.learn.config import checkpoint_epochs, sync
from fruitgan.learn.milestones import OneGenerator
from fruitgan.learn.run_control import fmt_duration

ETA_PROBE_STEPS = 2               # timed steps (on a throw-away copy) for the ETA before training: at least
ETA_PROBE_SECONDS = 2.0           # ... and more until this long has passed (a short burst misjudges a busy CPU)
ETA_PROBE_MAX_STEPS = 30          # ... but never more than this many,
ETA_PROBE_SHARE = 0.01            # ... nor longer than this share of the steps it estimates (short runs)
PARTS = ("steps", "evaluation", "milestone_images", "checkpoints")
# Other programs' load (the 1-minute load average less this run's threads) above this share of the CPUs: the
# estimate says it was measured on a busy machine, so its times hold only while that load lasts.
BUSY_SHARE = 0.5


def load_average() -> Optional[float]:
    """The machine's 1-minute load average; None where there is none (Windows)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _forked_rng(device: torch.device):
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def probe_may_go_on(elapsed: float, timed: int, run_steps: int) -> bool:
    """Time more steps while under ETA_PROBE_SECONDS and under ETA_PROBE_SHARE of the run's own steps."""
    return elapsed < min(ETA_PROBE_SECONDS, ETA_PROBE_SHARE * elapsed / timed * run_steps)


class RunEstimate:
    """Times the parts of a run whose networks are built: ``models[gi]`` steps ``groups[gi]``; ``streams``
    give each fruit's batches, ``quality`` its figures, ``grids(gi)`` a group's progress grids, ``history``
    one fruit's history (for the plot probe) and ``snapshot(epoch)`` a checkpoint's content."""

    def __init__(self, *, groups: List[List[str]], models: list, streams: dict, cfg, gan_config,
                 steps_per_epoch: int, device: torch.device, milestones: set, quality,
                 grids: Callable[[int], list], history: dict, snapshot: Callable[[int], dict],
                 clock: Callable[[], float] = time.perf_counter, load: Callable[[], Optional[float]] = load_average):
        self.groups, self.models, self.streams, self.cfg, self.gan_config = groups, models, streams, cfg, gan_config
        self.steps_per_epoch, self.device, self.milestones, self.quality = steps_per_epoch, device, milestones, quality
        self.grids, self.history, self.snapshot, self.clock, self.load = grids, history, snapshot, clock, load
        self.first = 1

    def epoch_seconds(self, gi: int, epochs: int = 1) -> float:
        """Seconds per epoch of group ``gi`` from steps timed on a throw-away copy, for a run of ``epochs``."""
        group, probe = self.groups[gi], copy.deepcopy(self.models[gi])
        b, cfg, device = self.cfg.batch_size, self.gan_config, self.device
        with _forked_rng(device):
            real = torch.stack([self.streams[f].images(0) for f in group])
            noise = torch.randn(len(group), b, cfg.noise_dim, device=device)
            random = gan_augment.stack_fruits([gan_augment.draw_step_random(cfg, b, None, device) for _ in group])
            probe.train_step(real, noise, random)                            # warm-up (allocations, kernels)
            sync(device)
            t0, timed = time.perf_counter(), 0
            while timed < ETA_PROBE_STEPS or (timed < ETA_PROBE_MAX_STEPS and probe_may_go_on(
                    time.perf_counter() - t0, timed, self.steps_per_epoch * epochs)):
                probe.train_step(real, noise, random)
                timed += 1
                sync(device)
        return (time.perf_counter() - t0) / timed * self.steps_per_epoch

    def _one_fruit(self, gi: int, i: int) -> OneGenerator:
        """Fruit i of group gi's sampling generator as a one-fruit group (what the quality figures draw from)."""
        states = self.models[gi].fruit_state_dicts(i)
        with _forked_rng(self.device):
            net = gm.Generator(self.gan_config)
        net.load_state_dict(states["ema"] if states["ema"] is not None else states["generator"])
        return OneGenerator(net.to(self.device).eval())

    def _milestone_seconds(self, gi: int) -> dict:
        """One milestone's work for group ``gi``, timed without writing anything: the grids, then each fruit's
        figures ("evaluation") and, priced from them, its test-part figures at the end ("final"), {fruit: seconds}
        both; also the figures measured ({fruit: figures}, empty without evaluation), for the plot probe."""
        t0 = self.clock()
        for image in self.grids(gi):
            image.save(io.BytesIO(), format="PNG")
        out = {"milestone_images": self.clock() - t0, "evaluation": {}, "final": {}, "figures": {}}
        for i, f in enumerate(self.groups[gi] if self.quality.active else []):
            one = self._one_fruit(gi, i)
            with _forked_rng(self.device):
                t0 = self.clock()
                out["figures"].update(self.quality.figures([f], one, self.first))      # kept nowhere
                # The end's full test is priced by the steps of the check just timed, not run: it costs minutes.
                out["evaluation"][f], out["final"][f] = self.clock() - t0, self.quality.final_seconds([f])
        return out

    def _plot_seconds(self, last: int, figures: dict) -> float:
        """One history plot as the run will draw it, into a throw-away folder: a stand-in history with a row
        per epoch up to ``last`` and ``figures`` (one fruit's quality figures) at each milestone, since a plot
        with quality panels takes several times as long as the empty one a new run starts with."""
        from fruitgan.learn import plots as training_plots
        row = {"d_loss": 0.7, "g_loss": 1.0, "d_real": 0.6, "d_fake": 0.4, "seconds": 1.0}
        marks = [e for e in sorted(self.milestones) if e <= last] if figures else []
        stand_in = {**self.history, "epochs": [{"epoch": e, **row} for e in range(1, last + 1)],
                    "quality": [{**figures, "epoch": e} for e in marks]}
        with tempfile.TemporaryDirectory(prefix="plot_probe_") as tmp:
            training_plots.plot_fruit_history(self.history, Path(tmp) / "warm_up.png")   # the import
            t0 = time.perf_counter()
            training_plots.plot_fruit_history(stand_in, Path(tmp) / "probe.png")
            return time.perf_counter() - t0

    def _checkpoint_seconds(self) -> float:
        """A checkpoint's snapshot and serialisation, into memory."""
        t0 = time.perf_counter()
        torch.save(self.snapshot(self.first - 1), io.BytesIO())
        return time.perf_counter() - t0

    def run(self, first: int, last: int) -> dict:
        """Measured estimate of epochs ``first..last``.

        Returns {"per_fruit": {fruit: s}, "parts": {part: s}, "total": s, "load": the load average as measured}:
        a fruit gets its share of its group's steps, grids and plots, and its own evaluation.
        """
        self.first = first
        epochs = max(0, last - first + 1)
        marks = sum(1 for e in self.milestones if first <= e <= last)
        parts = dict.fromkeys(PARTS, 0.0)
        per_fruit: Dict[str, float] = {}
        probes = [self._milestone_seconds(gi) for gi in range(len(self.groups))]
        figures = next(iter(probes[0]["figures"].values()), {})
        plot = self._plot_seconds(last, figures) if epochs else 0.0
        parts["milestone_images"] += plot                # the all-fruit figure at the end: about one plot's time
        for gi, group in enumerate(self.groups):
            n, probe = len(group), probes[gi]
            steps = self.epoch_seconds(gi, epochs) * epochs
            images = probe["milestone_images"] * marks + plot * n * (marks + 1)
            parts["steps"] += steps
            parts["milestone_images"] += images
            for f in group:
                evaluation = probe["evaluation"].get(f, 0.0) * marks + probe["final"].get(f, 0.0)
                parts["evaluation"] += evaluation
                per_fruit[f] = (steps + images) / n + evaluation
        cadence = self.cfg.checkpoint_minutes * 60.0
        by_time = int(parts["steps"] // cadence) if cadence else epochs
        fixed = sum(1 for e in checkpoint_epochs(last, self.milestones, self.cfg.keep_checkpoint_every) if e >= first)
        parts["checkpoints"] = self._checkpoint_seconds() * min(epochs, fixed + by_time)
        return {"per_fruit": per_fruit, "parts": parts, "total": sum(parts.values()), "load": self.load()}

    def lines(self, estimate: dict, first: int, last: int) -> List[str]:
        """What the console says before training: a line per fruit (its training images and steps, its own
        evaluation), then the checkpoints and the total by part, and whether the machine was busy."""
        out = [f"estimated time for epochs {first}-{last} (measured on this machine):"]
        steps = self.steps_per_epoch * max(0, last - first + 1)
        for f, seconds in estimate["per_fruit"].items():
            shared = next(g for g in self.groups if f in g)
            note = f"; its share of the steps taken together with {', '.join(x for x in shared if x != f)}" \
                if len(shared) > 1 else ""
            out.append(f"  {f:<10} {fmt_duration(seconds)} ({self.streams[f].size} training images, {steps} "
                       f"steps{note})")
        parts = estimate["parts"]
        out.append(f"  checkpoints {fmt_duration(parts['checkpoints'])}; total {fmt_duration(estimate['total'])} "
                   f"(steps {fmt_duration(parts['steps'])}, evaluation {fmt_duration(parts['evaluation'])}, "
                   f"images and plots {fmt_duration(parts['milestone_images'])})")
        load, cpus = estimate.get("load"), os.cpu_count() or 1          # a machine-wide figure: all its CPUs
        own = torch.get_num_threads() if self.device.type == "cpu" else 1
        if load is not None and load - own > BUSY_SHARE * cpus:
            out.append(f"  measured on a busy machine (load average {load:.1f} on {cpus} CPUs, this run's threads "
                       f"{own}): these times hold only while that load lasts")
        return out
