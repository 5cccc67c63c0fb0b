"""MultiFruitGANTrainer: one DCGAN per fruit, all fruits trained in one session into models/model_<name>/.

Each fruit keeps its own Generator/Discriminator pair, optimizers, data stream and noise stream. Every
fruit takes the same steps per epoch (training_data.py), so all fruits step *together* through
grouped_gan.GroupedGAN (the same arithmetic per fruit, one set of larger kernels instead of seven small
ones), whatever their sizes; ``schedule="sequential"`` trains one fruit at a time instead.

The run's parts are built from its settings in fruitgan/learn/parts.py, each given values, never this
class: the batches and noise (batches.py), the estimate printed before training (estimate.py), the quality
figures and best checkpoint (milestones.py), checkpoints (checkpoints.py), the records (records.py). The
console (run_control.Console) prints every line, never over a progress bar. This class holds the loop:
epochs, milestones, checkpoints, stopping.

The "latest" checkpoint is written atomically on a wall-clock cadence (``checkpoint_minutes``), at every
milestone, at the end, and when Ctrl+C or SIGTERM stops the run (the epoch in progress finishes first; a
second Ctrl+C stops at once). A kill -9 loses at most the cadence; ``resume=True`` continues exactly where
the checkpoint stopped. Under ``torchrun --nproc-per-node N`` each rank trains its own share of the fruits;
rank 0 writes the model-wide files.
"""
from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, Optional, Union

import torch

from fruitgan.learn import parts
from fruitgan.learn.config import (DistInfo, TrainConfig, checkpoint_epochs, milestone_epochs, precision_hint,
                                   resolve_precision, Resumed, load_resume)
# The grid's layout: make_report.py draws its own grids alike.
from fruitgan.learn.parts import GRID_GUTTER, GRID_PAD, GRID_SIDE, image_grid  # noqa: F401
from fruitgan.learn.run_control import (Cadence, Console, RunClock, StopRequest, continue_hint, milestone_line,
                                        stop_message, time_line)
from fruitgan.models.folder import ModelFolder
from fruitgan.models.may_write import LOCK_ADVICE, check_may_write
from fruitgan.models.sizes import check_room, kept_line, predicted_bytes
from fruitgan.util.run_lock import RunLock
from fruitgan.util.safe_files import check_name, clean_stale_temp
TRAIN_SCRIPT = "train_gan.py"     # named in the "continue with" hint after Ctrl+C


class MultiFruitGANTrainer:
    """Trains one GAN per fruit of a dataset version and writes the models/model_<name>/ tree."""

    def __init__(self, config: TrainConfig, workdir: Path, *, overwrite: bool = False,
                 resume: Union[bool, Resumed] = False,
                 log: Callable[[str], None] = print, pricing_path: Optional[Path] = None,
                 cost_tracker=None, dist: Optional[DistInfo] = None):
        # Every line goes through the console: above the progress bars while they are on screen, never over one.
        self.console = Console(log)
        self.cfg, self.workdir, self.log = config, Path(workdir), self.console.say
        self.dist, self.resume, self.overwrite = dist or DistInfo(), resume, overwrite
        check_name(config.model_name, "model name")
        check_name(config.dataset_version, "dataset version")
        self.store = ModelFolder.in_workdir(self.workdir, config.model_name, self.dist.rank, self.dist.world)
        self.pricing, self.tracker = parts.costs(pricing_path, cost_tracker)
        self.device = self.dist.device(config.device)
        self.start_epoch, self.created = 1, None   # created: when the model's first run began; a resume keeps it
        self.requested_precision = self.cfg.precision
        if resume is True:     # not read yet (train_gan.py hands over what it read): the saved settings, once
            self.resume = load_resume(self.store, config.to_dict())
        if self.resume:        # the arithmetic is fixed in the saved settings, unless --precision is given
            self.cfg, self.requested_precision, self.created = (self.resume.config, self.resume.requested_precision,
                                                                self.resume.created)
        self.cfg = replace(self.cfg, precision=resolve_precision(self.cfg.precision, self.device))
        d = self.data = parts.load_data(self.cfg, self.workdir, self.dist, self.device)
        self.datasets, self.all_fruits, self.fruits, self.groups = d.datasets, list(d.datasets), d.fruits, d.groups
        self.resolution, self.gan_config, self.steps_per_epoch = d.resolution, d.gan_config, d.steps_per_epoch
        self.states, self.streams = d.states, d.streams
        self.milestones = milestone_epochs(self.cfg.milestones, self.cfg.epochs)
        self.quality = parts.quality(self.cfg, self.workdir, d, self.device, self.log)
        self.records = parts.records(self.store, self.cfg, d, self.dist, self.workdir, self.device,
                                     self.requested_precision, self.pricing)
        self.run_timing: dict = {}                   # estimate vs actual and where the time went (summary)
        self.clock = RunClock()                      # restarted when training starts

    # ------------------------------------------------------------------ set-up
    def _build_models(self) -> None:
        self.models = parts.build_models(self.cfg, self.data, self.device)
        self.checkpoints = parts.checkpoints(self.store, self.cfg, self.data, self.models, self.device)
        self.estimate = parts.estimate(self.cfg, self.data, self.models, self.device, self.milestones, self.quality,
                                       self.progress_grids, self.checkpoints)

    # ------------------------------------------------------------------ training
    def _batches(self, group, epoch: int):
        return self.data.batches(group, epoch, self.cfg.batch_size, self.device)

    def train_epoch(self, gi: int, epoch: int) -> Dict[str, dict]:
        """One epoch of group ``gi``; returns per-fruit mean losses and D outputs (one host sync, at the end)."""
        group, model = self.groups[gi], self.models[gi]
        sums = None
        for real, noise, random in self._batches(group, epoch):
            out = model.train_step(real, noise, random)                   # dict of (F,) tensors
            self.console.flush()                     # a Ctrl+C message waits for the step, never crosses a bar
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
            # Again, under the lock: another run may have started or finished since train_gan.py asked.
            check_may_write(self.store, overwrite=self.overwrite, resume=bool(self.resume))
            check_room(self.store, self.predicted_bytes(), self.cfg.keep_checkpoint_every)
            clean_stale_temp(self.store.path, remove_unknown_owner=True)   # dead runs' temp files
            yield

    def predicted_bytes(self) -> Dict[str, int]:
        """What this run's model folder keeps when it ends, by part (sizes.predicted_bytes)."""
        side = GRID_SIDE * (self.resolution + GRID_PAD) + GRID_PAD
        return predicted_bytes(self.gan_config, len(self.all_fruits), self.cfg.epochs, self.cfg.keep_checkpoint_every,
                               len(self.milestones), self.cfg.evaluate, side * side)

    def _prepare(self) -> int:
        """Everything before the first epoch; returns the last epoch this call trains."""
        if self.overwrite and not self.resume and self.dist.is_main:
            self.store.remove()             # asked for explicitly: the old model's files must not mix in
        self.dist.barrier()
        self._build_models()
        if self.resume:
            self.start_epoch = self.checkpoints.load(self.fruits, self.log)
            self.log(f"resuming model {self.cfg.model_name!r} at epoch {self.start_epoch} of {self.cfg.epochs}")
        self.created = self.records.write_config(self.created)
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
        for line in self.estimate.lines(estimate, self.start_epoch, last):
            self.log(line)
        self.clock = RunClock()
        self.run_timing = {"estimate": {"seconds": round(estimate["total"], 1),
                                        "per_fruit": {f: round(v, 1) for f, v in estimate["per_fruit"].items()}}}
        self.saved_epoch = self.start_epoch - 1    # last epoch whose checkpoint (and histories) are on disk
        self.epoch_running, done, status = self.start_epoch, self.saved_epoch, "interrupted"
        self.console.start_bars(self.fruits, self.start_epoch, last, enabled=self.dist.is_main)
        try:
            with StopRequest(lambda name: stop_message(name, self.saved_epoch), self.console.say_soon,
                             lambda: self._continue_hint(self.epoch_running, finished=False)) as stop:
                done = self._epochs(self.start_epoch, last, stop)
                status = "complete" if done >= self.cfg.epochs else "stopped"
                self._finish(done, status, estimate)
        finally:
            self.console.close()
            self.checkpoints.wait()         # never leave with a write half done
            self.tracker.close()
            if status == "interrupted":
                self.records.mark_interrupted(self.saved_epoch)
        for line in self.records.end_lines(done, status):
            self.log(line)
        if self.dist.is_main:
            self.log(kept_line(self.store))       # what the folder keeps, by part, and its size
        return {f: self.records.fruit_summary(f) for f in self.fruits}

    def _epochs(self, first: int, last: int, stop: StopRequest) -> int:
        """Epochs first..last with checkpoints on the cadence; returns the last epoch trained.
        A stop request ends the loop after the epoch in progress, with a checkpoint, as Interrupted."""
        cadence = Cadence(self.cfg.checkpoint_minutes)
        fixed = checkpoint_epochs(last, self.milestones, self.cfg.keep_checkpoint_every)
        for epoch in range(first, last + 1):
            self.epoch_running = epoch
            rows = self.run_epoch(epoch)
            milestone = epoch in self.milestones
            for f, row in rows.items():
                self.console.update(f, row)
                if milestone:
                    measured = self.states[f].history["quality"][-1:] if self.quality.active else []
                    self.log(milestone_line(epoch, self.cfg.epochs, f, row, measured[0] if measured else None))
            due, stopping = self.dist.agree(epoch in fixed or cadence.due(), bool(stop.requested))
            if due or stopping:
                self._save_epoch(epoch, milestone, "running")
                cadence.mark()
            if milestone:
                self._plot_histories()
            if stopping and epoch < last:       # at the last epoch the run simply ends
                stop.stop(self._continue_hint(epoch))
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
            self.records.write_summary(epoch, status, self.run_timing)

    def _plot_histories(self, every_fruit: bool = False) -> None:
        with self.clock.part("milestone_images"):
            self.records.plot_histories(every_fruit)

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
            self.records.write_summary(done, status, self.run_timing)
        if done >= self.start_epoch:
            self.log(time_line(estimate["total"], actual, self.run_timing["time"]))

    def _continue_hint(self, epoch: int, finished: bool = True) -> str:
        cmd = f"python {TRAIN_SCRIPT} --resume --model-name {self.cfg.model_name}"
        if self.workdir.resolve() != Path.cwd().resolve():
            cmd += f" --workdir {self.workdir}"
        return continue_hint(cmd, epoch, self.cfg.epochs, self.saved_epoch, finished, self.dist.world > 1)
