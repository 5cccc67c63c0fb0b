"""MultiFruitGANTrainer: one DCGAN per fruit, all fruits trained in one session into models/model_<name>/.

Each fruit keeps its own Generator/Discriminator pair, optimizers, data stream and noise stream. Every
fruit takes the same steps per epoch (training_data.py), so all fruits step *together* through
grouped_gan.GroupedGAN (the same arithmetic per fruit, one set of larger kernels instead of seven small
ones), whatever their sizes; ``schedule="sequential"`` trains one fruit at a time instead.

The run's parts, each in its own module: its settings (training_config.py), the batches and noise
(training_data.py), the estimate printed before training (run_estimate.py), the quality figures and the
best checkpoint (milestone_quality.py), checkpoints and network files (training_checkpoints.py), and the
JSON records (run_records.py). This class holds the loop: epochs, milestones, checkpoints, stopping.

The "latest" checkpoint is written atomically on a wall-clock cadence (``checkpoint_minutes``), at every
milestone, at the end, and when Ctrl+C or SIGTERM stops the run (the epoch in progress finishes first; a
second Ctrl+C stops at once). A kill -9 loses at most the cadence; ``resume=True`` continues exactly where
the checkpoint stopped. Under ``torchrun --nproc-per-node N`` each rank trains its own share of the fruits;
rank 0 writes the model-wide files.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

import cost_analysis_training as cost_mod
import data_loader
from fruitgan.util import pictures
from fruitgan.learn.grouped import GroupedGAN, tune_cpu_allocator
from fruitgan.data.heldout_split import validation_key
from fruitgan.learn.milestones import MilestoneQuality
from fruitgan.models.store import ModelFolder
from fruitgan.learn.estimate import RunEstimate, fmt_duration
from fruitgan.util.run_lock import RunLock, refuse_if_held
from fruitgan.learn.records import RunRecords, new_history, now
from fruitgan.util.safe_files import check_name, clean_stale_temp
from fruitgan.learn.checkpoints import TrainingCheckpoints
from fruitgan.learn.config import (DistInfo, TrainConfig, check_bounds, checkpoint_epochs, fruit_seed,  # noqa: F401
                             milestone_epochs, precision_hint, resolve_precision, resumed_config)
from fruitgan.learn.batches import FruitStream, draw_step_inputs, steps_per_epoch
from fruitgan.learn.run_control import Cadence, FruitProgress, RunClock, StopRequest, continue_hint, stop_message
from fruitgan.util.user_io import Interrupted, UserError
from fruitgan.learn import augment as gan_augment
GRID_SIDE = 8                     # fixed-noise progress grids are 8 x 8 images
GRID_PAD = 2                      # pixels between grid cells
GRID_GUTTER = 128                 # grey between the black cells
LOCK_ADVICE = "wait for it to finish or choose another --model-name"
TRAIN_SCRIPT = "train_gan.py"     # named in the "continue with" hint after Ctrl+C


def image_grid(images: torch.Tensor, side: int = GRID_SIDE, pad: int = GRID_PAD):
    """(N,1,R,R) in [-1,1] -> a PIL grayscale grid image, ``side`` per row, grey gutters between the tiles."""
    return pictures.image_grid(pictures.to_uint8(images), min(side, images.shape[0]), pad, GRID_GUTTER)


def _figure(metrics: dict, key: str, label: str, spec: str) -> str:
    """'label value', or 'label: note' when the figure was not measured (e.g. not enough real drawings)."""
    value = metrics.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{label} {value:{spec}}"
    return f"{label}: {metrics.get(key + '_note') or 'not measured'}"


def milestone_line(epoch: int, epochs: int, fruit: str, row: dict, metrics: Optional[dict]) -> str:
    """The one console line a fruit gets at a milestone: losses, D's outputs and the quality figures."""
    line = (f"epoch {epoch:>4}/{epochs} {fruit:<10} D {row['d_loss']:.3f} G {row['g_loss']:.3f} "
            f"D(x) {row['d_real']:.2f} D(G(z)) {row['d_fake']:.2f}")
    if not metrics:
        return line
    acc, half = metrics.get(validation_key("two_sample_accuracy")), metrics.get(validation_key("two_sample_half_width"))
    held = (f"validation 2-sample {acc:.2f}±{half:.2f}" if isinstance(acc, float) and isinstance(half, float)
            else "held-out tests: no split" if metrics.get(validation_key("two_sample_note")) else "")
    parts = [held, _figure(metrics, "recognizability", "recognised", ".0%"), _figure(metrics, "fid", "FID", ".2f")]
    return line + " | " + "  ".join(p for p in parts if p)


@dataclass
class FruitState:
    """Per-fruit bookkeeping that is not a tensor of the networks."""

    fruit: str
    noise_gen: torch.Generator           # this fruit's noise, dropout masks, DiffAugment (on the device)
    fixed_noise: torch.Tensor            # (GRID_SIDE^2, nz): the same grid at every milestone
    history: dict = field(default_factory=dict)
    cost: Optional[dict] = None          # cost section so far (cost_analysis_training)
    best_score: float = -math.inf


class MultiFruitGANTrainer:
    """Trains one GAN per fruit of a dataset version and writes the models/model_<name>/ tree."""

    def __init__(self, config: TrainConfig, workdir: Path, *, overwrite: bool = False, resume: bool = False,
                 log: Callable[[str], None] = print, pricing_path: Optional[Path] = None,
                 cost_tracker: Optional[cost_mod.CostTracker] = None, dist: Optional[DistInfo] = None):
        self.cfg, self.workdir, self.log = config, Path(workdir), log
        self.dist, self.resume, self.overwrite = dist or DistInfo(), resume, overwrite
        check_name(config.model_name, "model name")
        check_name(config.dataset_version, "dataset version")
        self.store = ModelFolder.in_workdir(self.workdir, config.model_name, self.dist.rank, self.dist.world)
        self.pricing = cost_mod.load_pricing(pricing_path)
        self.tracker = cost_tracker or cost_mod.CostTracker(self.pricing)
        self.device = self.dist.device(config.device)
        if self.dist.is_main:   # a run writing this model now: say so before anything else
            refuse_if_held(self.store.path, f"model {config.model_name}", LOCK_ADVICE)
        self._check_model_dir(overwrite)
        self.start_epoch, self.created = 1, None   # created: when the model's first run began; a resume keeps it
        # The arithmetic this run uses, fixed in its saved settings (a resume keeps it unless --precision is given).
        self.requested_precision = self._load_saved_config() if resume else self.cfg.precision
        self.cfg = replace(self.cfg, precision=resolve_precision(self.cfg.precision, self.device))
        self.datasets = data_loader.load_version(self.workdir, self.cfg.dataset_version, self.cfg.fruits)
        self.all_fruits = list(self.datasets)
        self.fruits = self.dist.share(self.all_fruits)
        self.resolution = next(iter(self.datasets.values())).resolution
        self.gan_config = self.cfg.gan_config(self.resolution)
        check_bounds(self.cfg)
        # Every rank takes the same steps per epoch: the largest training part of the whole run sets it.
        self.steps_per_epoch = steps_per_epoch(self.cfg.steps_per_epoch,
                                               [d.train_index.numel() for d in self.datasets.values()],
                                               self.cfg.batch_size)
        self.states: Dict[str, FruitState] = {f: self._new_fruit_state(f) for f in self.fruits}
        self.groups = [[f] for f in self.fruits] if self.cfg.schedule == "sequential" else [list(self.fruits)]
        # Only the training part, kept uint8: held-out drawings (and copies of them) are never trained on.
        self.streams = {f: FruitStream(self.datasets[f].pixels, self.datasets[f].train_index,
                                       fruit_seed(self.cfg.seed, f), self.cfg.batch_size, self.device)
                        for f in self.fruits}
        self.milestones = milestone_epochs(self.cfg.milestones, self.cfg.epochs)
        self.quality = MilestoneQuality(self.workdir, self.cfg.dataset_version, self.datasets, self.fruits,
                                        self.device, self.cfg.seed, self.cfg.eval_samples, log, self.cfg.evaluate)
        self.records, self.estimate = RunRecords(self), RunEstimate(self)
        self.run_timing: dict = {}                   # estimate vs actual and where the time went (summary)
        self.clock = RunClock()                      # restarted when training starts

    # ------------------------------------------------------------------ set-up
    def _check_model_dir(self, overwrite: bool) -> None:
        if self.resume and not self.store.exists():
            raise UserError(f"no model {self.cfg.model_name!r} to resume in {self.store.path}; "
                            "train it first (without --resume)")
        if self.store.exists() and not overwrite and not self.resume:
            raise UserError(f"model {self.cfg.model_name!r} already exists in {self.store.path}; choose another "
                            "--model-name, continue it with --resume, or replace it with --overwrite")

    def _load_saved_config(self) -> str:
        """The saved settings with what this resume may change; returns the precision the user asked for."""
        saved = self.store.read_config()
        if saved is None:
            raise UserError(f"model {self.cfg.model_name!r} has no readable saved settings in {self.store.info_dir}; "
                            "train it again with --overwrite")
        self.cfg, requested, self.created = resumed_config(saved, self.cfg)
        return requested

    def _new_fruit_state(self, fruit: str) -> FruitState:
        s, ds = fruit_seed(self.cfg.seed, fruit), self.datasets[fruit]
        # On the training device, so no step waits for a host-to-device copy (on a CPU: like torch's default
        # generator seeded alike, so seeded runs are reproducible).
        noise_gen = torch.Generator(device=self.device).manual_seed(s + 1)
        fixed = torch.randn(GRID_SIDE * GRID_SIDE, self.gan_config.noise_dim,
                            generator=torch.Generator().manual_seed(s + 2))
        return FruitState(fruit, noise_gen, fixed, new_history(self.cfg, fruit, ds, self.steps_per_epoch))

    def _build_models(self) -> None:
        torch.manual_seed(self.cfg.seed)   # torch's own stream (each fruit's weights come from its own seed)
        if self.device.type == "cpu":
            tune_cpu_allocator()           # each step frees and re-allocates the same big buffers
        cuda_graph = self.cfg.cuda_graph and self.device.type == "cuda"
        self.models = [GroupedGAN(self.gan_config, len(g), device=self.device, precision=self.cfg.precision,
                                  compile=self.cfg.compile, cuda_graph=cuda_graph,
                                  init_seeds=[fruit_seed(self.cfg.seed, f) for f in g]) for g in self.groups]
        self.checkpoints = TrainingCheckpoints(self.store, self.gan_config, self.groups, self.models, self.states,
                                               self.device, self.cfg.keep_checkpoint_every)

    # ------------------------------------------------------------------ training
    def _batches(self, group: List[str], epoch: int):
        """Yield (real (F,b,1,R,R), noise (F,b,nz), random) for each step of ``epoch`` of a group, each fruit
        from its own stream: everything drawn and indexed on the device, no host work inside the epoch."""
        first = (epoch - 1) * self.steps_per_epoch
        for step in range(first, first + self.steps_per_epoch):
            real = torch.stack([self.streams[f].images(step) for f in group])
            drawn = [draw_step_inputs(self.gan_config, self.cfg.batch_size, self.states[f].noise_gen, self.device)
                     for f in group]
            yield real, torch.stack([n for n, _ in drawn]), gan_augment.stack_fruits([r for _, r in drawn])

    def train_epoch(self, gi: int, epoch: int) -> Dict[str, dict]:
        """One epoch of group ``gi``; returns per-fruit mean losses and D outputs (one host sync, at the end)."""
        group, model = self.groups[gi], self.models[gi]
        sums = None
        for real, noise, random in self._batches(group, epoch):
            out = model.train_step(real, noise, random)                   # dict of (F,) tensors
            sums = {k: v.detach().float() for k, v in out.items()} if sums is None else \
                {k: sums[k] + out[k].detach().float() for k in sums}
        means = {k: (v / self.steps_per_epoch).cpu().tolist() for k, v in sums.items()}
        return {f: {k: means[k][i] for k in means} for i, f in enumerate(group)}

    def progress_grids(self, gi: int) -> list:
        """The fixed-noise grid of each fruit of group ``gi`` (PIL images)."""
        fixed = torch.stack([self.states[f].fixed_noise for f in self.groups[gi]]).to(self.device)
        return [image_grid(g) for g in self.models[gi].generate(fixed)]      # (F, 64, 1, R, R)

    def _milestone(self, gi: int, epoch: int) -> None:
        """Each fruit's grid and quality figures, kept in its history; a best score saves its generator."""
        with self.clock.part("milestone_images"):
            for f, grid in zip(self.groups[gi], self.progress_grids(gi)):
                self.store.write_progress_grid(grid, f, epoch)
        if not self.quality.active:
            return
        with self.clock.part("evaluation"):
            for i, (f, metrics) in enumerate(self.quality.figures(self.groups[gi], self.models[gi], epoch).items()):
                st = self.states[f]
                st.history["quality"].append(metrics)
                score = self.quality.score(metrics)
                if score > st.best_score:
                    st.best_score, st.history["best_epoch"] = score, epoch
                    self.checkpoints.save_generator(gi, i, f, epoch, best=True, metrics=metrics, score=score)

    def run_epoch(self, epoch: int) -> Dict[str, dict]:
        """One epoch of every group (and its milestone work); returns each fruit's history row."""
        rows: Dict[str, dict] = {}
        for gi, group in enumerate(self.groups):
            self.tracker.begin(group, previous={f: self.states[f].cost for f in group})
            with self.clock.part("steps"):
                t0 = self.clock.now()
                stats = self.train_epoch(gi, epoch)
                seconds = self.clock.now() - t0
            if epoch in self.milestones:
                self._milestone(gi, epoch)
            sections = self.tracker.end(group, {f: 1 for f in group})
            for f in group:
                self.states[f].cost = sections[f]
                rows[f] = {"epoch": epoch, **{k: round(float(v), 6) for k, v in stats[f].items()},
                           "seconds": seconds / len(group)}
                self.states[f].history["epochs"].append(rows[f])
        return rows

    # ------------------------------------------------------------------ the run
    def train(self) -> dict:
        """Train every fruit to ``epochs`` (holding the model folder); returns the summary of this rank's fruits."""
        with self._ownership():
            return self._train()

    @contextlib.contextmanager
    def _ownership(self):
        """The model folder's RunLock, taken before --overwrite's delete and the first write, held to the end.
        Under torchrun only rank 0 takes it: the ranks of one run share the folder."""
        if not self.dist.is_main:
            yield
            return
        with RunLock(self.store.path, f"model {self.cfg.model_name}", LOCK_ADVICE):
            self._check_model_dir(self.overwrite)   # again: another run may have finished it since __init__
            clean_stale_temp(self.store.path, remove_unknown_owner=True)   # dead runs' temp files
            yield

    def _prepare(self) -> int:
        """Everything before the first epoch; returns the last epoch this call trains."""
        if self.overwrite and not self.resume and self.dist.is_main:
            self.store.remove()             # asked for explicitly: the old model's files must not mix in
        self.dist.barrier()
        self._build_models()
        self.created = self.created or now()
        if self.resume:
            self.start_epoch = self.checkpoints.load(self.fruits, self.log)
            self.log(f"resuming model {self.cfg.model_name!r} at epoch {self.start_epoch} of {self.cfg.epochs}")
        self.records.write_config()
        self.quality.setup(self.states)
        last = self.cfg.epochs
        if self.cfg.stop_after_epochs:
            last = min(last, self.start_epoch - 1 + self.cfg.stop_after_epochs)
        self.log(f"training {len(self.fruits)} fruit(s) {', '.join(self.fruits)} at {self.resolution}px on "
                 f"{self.device} ({self.cfg.precision}), batch {self.cfg.batch_size}, {self.steps_per_epoch} steps "
                 f"per epoch, epochs {self.start_epoch}-{last} of {self.cfg.epochs}")
        if precision_hint(self.device, self.cfg.precision):
            self.log(precision_hint(self.device, self.cfg.precision))
        return last

    def _train(self) -> dict:
        """Train every fruit to ``epochs``; Ctrl+C or SIGTERM: the epoch in progress finishes, a checkpoint is
        written and user_io.Interrupted says how to continue; a second Ctrl+C stops at once."""
        last = self._prepare()
        estimate = self.estimate.run(self.start_epoch, last)
        self.estimate.log(estimate, self.start_epoch, last)
        self.clock = RunClock()
        self.run_timing = {"estimate": {"seconds": round(estimate["total"], 1),
                                        "per_fruit": {f: round(v, 1) for f, v in estimate["per_fruit"].items()}}}
        self.saved_epoch = self.start_epoch - 1    # last epoch whose checkpoint (and histories) are on disk
        self.epoch_running, done, status = self.start_epoch, self.saved_epoch, "interrupted"
        progress = FruitProgress(self.fruits, self.start_epoch, last, enabled=self.dist.is_main, log=self.log)
        try:
            with StopRequest(lambda name: stop_message(name, self.saved_epoch)) as stop:
                done = self._epochs(self.start_epoch, last, progress, stop)
            status = "complete" if done >= self.cfg.epochs else "stopped"
            self._finish(done, status, estimate)
        except Interrupted:                 # (a KeyboardInterrupt) the clean stop: its own message
            raise
        except KeyboardInterrupt:           # a second Ctrl+C: stop now, back to the last checkpoint
            raise Interrupted(self._continue_hint(self.epoch_running, finished=False)) from None
        finally:
            progress.close()
            self.checkpoints.wait()         # never leave with a write half done
            self.tracker.close()
            if status == "interrupted":
                self.records.mark_interrupted(self.saved_epoch)
        for f in self.fruits:
            if self.states[f].cost:
                self.log(cost_mod.format_cost_summary(f, self.states[f].cost))
        for line in self.records.where_to_look(done, status):
            self.log(line)
        return {f: self.records.fruit_summary(f) for f in self.fruits}

    def _epochs(self, first: int, last: int, progress: FruitProgress, stop: StopRequest) -> int:
        """Epochs first..last with checkpoints on the cadence; returns the last epoch trained.
        A stop request ends the loop after the epoch in progress, with a checkpoint, as Interrupted."""
        cadence = Cadence(self.cfg.checkpoint_minutes)
        fixed = checkpoint_epochs(last, self.milestones, self.cfg.keep_checkpoint_every)
        for epoch in range(first, last + 1):
            self.epoch_running = epoch
            rows = self.run_epoch(epoch)
            milestone = epoch in self.milestones
            for f, row in rows.items():
                progress.update(f, row)
                if milestone:
                    measured = self.states[f].history["quality"][-1:] if self.quality.active else []
                    progress.write(milestone_line(epoch, self.cfg.epochs, f, row, measured[0] if measured else None))
            due, stopping = self.dist.agree(epoch in fixed or cadence.due(), bool(stop.requested))
            if due or stopping:
                self._save_epoch(epoch, milestone, "running")
                cadence.mark()
            if milestone:
                self._plot_histories()
            if stopping and epoch < last:       # at the last epoch the run simply ends
                raise Interrupted(self._continue_hint(epoch))
        return last

    def _save_epoch(self, epoch: int, networks: bool, status: str) -> None:
        """The checkpoint, the plain networks (at milestones) and the JSON files, all of epoch ``epoch``."""
        with self.clock.part("checkpoints"):
            self.checkpoints.save(epoch)
            if networks:
                self.checkpoints.save_networks(epoch)
        self.saved_epoch = epoch
        with self.clock.part("history_writes"):
            self.run_timing["time"] = self.clock.breakdown()
            self.records.write_histories()
            self.records.write_summary(epoch, status)

    def _plot_histories(self, every_fruit: bool = False) -> None:
        """info/training_history_<fruit>.png for this rank's fruits (and, ``every_fruit``, the all-fruit figure
        on the main rank, other ranks' fruits read from their files), redrawn atomically from memory."""
        from fruitgan.learn import plots as training_plots
        with self.clock.part("milestone_images"):
            for f, s in self.states.items():
                training_plots.plot_fruit_history(s.history, self.store.history_plot_path(f))
            if every_fruit and self.dist.is_main:
                histories = {f: self.states[f].history if f in self.states else self.store.read_history(f)
                             for f in self.all_fruits}
                training_plots.plot_all_fruits({f: h for f, h in histories.items() if h},
                                               self.store.all_histories_plot_path())

    def _finish(self, done: int, status: str, estimate: dict) -> None:
        """The end of a run: networks, the test part's figures, final files and plots, the estimate's error."""
        # The networks of the last epoch; also when a resume found it checkpointed but killed before them.
        if done >= 1 and (done not in self.milestones or done < self.start_epoch):
            with self.clock.part("checkpoints"):
                self.checkpoints.save_networks(done)
        with self.clock.part("evaluation"):
            self.quality.measure_best_on_test(self.states, self.store, self.device)
        if done >= self.start_epoch:
            self._plot_histories(every_fruit=True)
        with self.clock.part("checkpoints"):
            self.checkpoints.wait()        # the summary's timing includes the last write
        actual = self.clock.elapsed()
        self.run_timing["estimate"]["actual_seconds"] = round(actual, 1)
        self.run_timing["time"] = self.clock.breakdown()
        with self.clock.part("history_writes"):
            self.records.write_histories()
            self.records.write_summary(done, status)
        if done >= self.start_epoch:
            off = (actual - estimate["total"]) / estimate["total"] if estimate["total"] else 0.0
            self.log(f"time: estimated {fmt_duration(estimate['total'])}, took {fmt_duration(actual)} "
                     f"({off:+.0%}); " + ", ".join(f"{k} {v:.1f}s" for k, v in self.run_timing["time"].items()
                                                     if k != "total"))

    def _continue_hint(self, epoch: int, finished: bool = True) -> str:
        cmd = f"python {TRAIN_SCRIPT} --resume --model-name {self.cfg.model_name}"
        if self.workdir.resolve() != Path.cwd().resolve():
            cmd += f" --workdir {self.workdir}"
        return continue_hint(cmd, epoch, self.cfg.epochs, self.saved_epoch, finished, self.dist.world > 1)
