"""MultiFruitGANTrainer: one DCGAN per fruit, all fruits trained in one session into models/model_<name>/.

Each fruit keeps its own Generator/Discriminator pair, optimizers, data order and noise stream. Fruits
whose datasets have the same size are stepped *together* through grouped_gan.GroupedGAN (same math per
fruit, one set of larger kernels instead of seven small ones); ``schedule="sequential"`` trains one
fruit at a time instead. Noise and data order are drawn on the training device, from per-fruit
generators whose states are checkpointed.

The "latest" checkpoint (weights, optimizers, RNG states, history, cost so far) is written atomically on a
wall-clock cadence (``checkpoint_minutes``), at every milestone, at the end, and when Ctrl+C or SIGTERM
stops the run (the epoch in progress finishes first; a second Ctrl+C stops at once). The histories and the
summary are written with it, so the files on disk always describe the same epoch. A kill -9 loses at most
the cadence; ``resume=True`` continues exactly where the checkpoint stopped.

Under ``torchrun --nproc-per-node N`` each rank trains its own share of the fruits; rank 0 writes the
model-wide files (config, summary, cost report, description).
"""
from __future__ import annotations

import contextlib
import copy
import io
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Collection, Dict, List, Optional, Sequence

import torch

import cost_analysis_training as cost_mod
import data_loader
import settings
from gan_model import GANConfig, network_payload, Generator, Discriminator
from grouped_gan import GroupedGAN, cpu_has_bf16, tune_cpu_allocator
import pictures
from model_store import CHECKPOINT_FORMAT, ModelFolder, update_index
from run_lock import RunLock, refuse_if_held
from safe_files import FRUITS, check_name, clean_stale_temp
from training_run import Cadence, CheckpointWriter, FruitProgress, RunClock, StopRequest
from user_io import Interrupted, UserError

MILESTONE_EVERY_AFTER = 100       # past the listed milestones, one image grid every 100 epochs
GRID_SIDE = 8                     # fixed-noise progress grids are 8 x 8 images
GRID_PAD = 2                      # pixels between grid cells
GRID_GUTTER = 128                 # grey between the black cells
SEED_STRIDE = 1009                # per-fruit seeds: seed * SEED_STRIDE + fruit index (a prime, so no overlap)
EVAL_SEED_OFFSET = 7919           # evaluation noise comes from its own stream, so it never shifts training RNG
ETA_PROBE_STEPS = 2               # timed steps (on a throw-away copy) for the ETA before training: at least
ETA_PROBE_SECONDS = 2.0           # ... and more until this long has passed (a short burst misjudges a busy CPU)
ETA_PROBE_MAX_STEPS = 30          # ... but never more than this many,
ETA_PROBE_SHARE = 0.01            # ... nor longer than this share of the steps it estimates (short runs)
LOCK_ADVICE = "wait for it to finish or choose another --model-name"
TRAIN_SCRIPT = "train_gan.py"     # named in the "continue with" hint after Ctrl+C


# Settings that shaped the run's past epochs: a resumed run must keep them (the rest may change).
FIXED_ON_RESUME = ("dataset_version", "batch_size", "lr", "fruits", "seed", "schedule", "ema_decay", "real_label")


@dataclass
class TrainConfig:
    """Everything one training run needs; saved as info/training_config_<name>.json.

    Defaults, bounds and help of each field are declared in settings.py.
    """

    dataset_version: str                                       # npzData/<fruit>_version<NAME>.npz to train on
    model_name: str = settings.MODEL_NAME.default              # models/model_<name>/
    epochs: int = settings.EPOCHS.default                      # total epochs per fruit
    batch_size: int = settings.BATCH_SIZE.default              # images per fruit per step
    lr: float = settings.LR.default                            # Adam learning rate, both networks
    description: str = settings.DESCRIPTION.default            # free text, written into info/description.txt
    device: str = settings.DEVICE.default                      # auto | cpu | cuda | cuda:N
    fruits: Optional[List[str]] = settings.FRUIT_LIST.default  # None: every fruit of the dataset version
    seed: int = settings.SEED.default                          # makes CPU runs reproducible
    precision: str = settings.PRECISION.default                # auto | fp32 | bf16 (autocast); see resolve_precision
    schedule: str = settings.SCHEDULE.default                  # together: same-size fruits at once; sequential
    milestones: Sequence[int] = settings.MILESTONES.default    # epochs that get a progress grid (+ the last)
    keep_checkpoint_every: int = settings.KEEP_CHECKPOINT_EVERY.default  # epoch_NNNN.pt kept every N (0: none)
    checkpoint_minutes: float = settings.CHECKPOINT_MINUTES.default    # latest.pt at most this often (+ milestones)
    evaluate: bool = settings.EVALUATE.default                 # quality metrics at milestones
    eval_samples: int = settings.EVAL_SAMPLES.default          # generated images per fruit per evaluation
    ema_decay: float = settings.EMA_DECAY.default              # > 0: sample from a moving-average generator
    real_label: float = settings.REAL_LABEL.default            # < 1: one-sided label smoothing
    stop_after_epochs: Optional[int] = settings.STOP_AFTER_EPOCHS.default  # at most this many epochs now
    compile: bool = settings.COMPILE.default                   # torch.compile the forward passes (else eager)
    cuda_graph: bool = settings.CUDA_GRAPH.default             # CUDA only: replay each step as a CUDA graph

    def to_dict(self) -> dict:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def from_saved(cls, saved: dict, source: str) -> "TrainConfig":
        """The config a run saved (training_config_<name>.json); a wrong value is a one-line UserError."""
        values = dict(saved)
        values["device"] = saved.get("requested_device", saved.get("device"))  # "auto" stays auto
        if not isinstance(values.get("dataset_version"), str):
            raise UserError(f"{source}: dataset_version is missing or not text; fix the file or train a new model")
        checked = settings.check_values(values, settings.TRAIN_SETTINGS, source,
                                        "fix the file or train a new model")
        return cls(**checked)

    def resumed(self, changes: dict) -> "TrainConfig":
        """This saved config with ``changes`` ({field: value} the user gave) applied.

        Settings that shaped the past epochs (FIXED_ON_RESUME) cannot change, and epochs can only grow:
        either is refused with a one-line UserError naming the flag.
        """
        cfg = copy.deepcopy(self)
        for name, value in changes.items():
            saved = getattr(self, name)
            if name in FIXED_ON_RESUME:
                if not _same_setting(value, saved):
                    raise UserError(f"{_flag_of(name)} cannot change when resuming model {self.model_name} "
                                    f"(saved {_shown(saved)}); drop the flag or train a new model")
                continue    # the same setting: keep the saved spelling (e.g. the fruits' order)
            if name == "epochs" and value < saved:
                raise UserError(f"--epochs {value} cannot shorten model {self.model_name} (saved {saved} epochs); "
                                "give at least that many to extend it, or drop the flag")
            setattr(cfg, name, value)
        return cfg


def _same_setting(given, saved) -> bool:
    """Equal as settings: fruit lists compare as sets (the saved one is in the dataset's order)."""
    if isinstance(given, (list, tuple)) and isinstance(saved, (list, tuple)):
        return sorted(given) == sorted(saved)
    return given == saved


def _flag_of(name: str) -> str:
    flag = next((s.flag for s in settings.TRAIN_SETTINGS if s.field == name), None)
    return flag or name


def _shown(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; an explicit 'cuda' without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but no CUDA GPU is available; use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu or cuda") from None


def resolve_precision(name: str, device: torch.device) -> str:
    """'auto' is bf16 where the device multiplies bf16 in hardware, else fp32; the others are themselves.

    On the 2-core CPU with AVX512-BF16 bf16 made the 7-fruit step 1.4x (28 px) to 1.9x (64 px) faster,
    and 400-epoch runs of apple and banana were as real on the held-out tests as fp32 ones (README).
    """
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_bf16() else "fp32"


def fruit_seed(seed: int, fruit: str) -> int:
    """A fruit's own seed: the same whichever group, rank or order trains it."""
    return seed * SEED_STRIDE + FRUITS.index(fruit) if fruit in FRUITS else seed * SEED_STRIDE + sum(map(ord, fruit))


def milestone_epochs(milestones: Sequence[int], last_epoch: int) -> set:
    """The listed milestones, every 100 epochs after them, and the last epoch."""
    marks = {m for m in milestones if 1 <= m <= last_epoch}
    top = max(marks, default=0)
    marks.update(range(top + MILESTONE_EVERY_AFTER, last_epoch + 1, MILESTONE_EVERY_AFTER))
    marks.add(last_epoch)
    return marks


def checkpoint_epochs(last_epoch: int, marks: Collection[int], keep_every: int) -> set:
    """Epochs that always end with a checkpoint (besides the time cadence): milestones, every
    ``keep_every``-th epoch (its epoch_NNNN.pt is kept) and the last epoch."""
    kept = range(keep_every, last_epoch + 1, keep_every) if keep_every else ()
    return {m for m in marks if m <= last_epoch} | set(kept) | {last_epoch}


def image_grid(images: torch.Tensor, side: int = GRID_SIDE, pad: int = GRID_PAD):
    """(N,1,R,R) in [-1,1] -> a PIL grayscale grid image, ``side`` per row, grey gutters between the tiles."""
    return pictures.image_grid(pictures.to_uint8(images), min(side, images.shape[0]), pad, GRID_GUTTER)


def _figure(metrics: dict, key: str, label: str, spec: str, note_key: str = "") -> str:
    """'label value', or 'label: note' when the figure was not measured (e.g. not enough real drawings)."""
    value = metrics.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{label} {value:{spec}}"
    return f"{label}: {metrics.get(note_key or key + '_note') or 'not measured'}"


def _milestone_figures(metrics: dict) -> str:
    """The milestone log line's figures: the held-out tests first (the headline), then the rest."""
    note = metrics.get("two_sample_note")
    if note and note == metrics.get("memorisation_note"):     # e.g. no split: say it once
        held_out = [f"held-out tests: {note}"]
    else:
        held_out = [_figure(metrics, "two_sample_accuracy", "2-sample accuracy", ".2f", "two_sample_note"),
                    _figure(metrics, "memorisation_ratio", "memorisation", ".2f", "memorisation_note")]
    parts = [*held_out, _figure(metrics, "recognizability", "recognised", ".0%"),
             _figure(metrics, "fid", "FID", ".2f"), _figure(metrics, "coverage", "coverage", ".2f")]
    return "  ".join(parts)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _fmt_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


@dataclass
class DistInfo:
    """Where this process stands under torchrun (world 1 without it)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "DistInfo":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


@dataclass
class FruitState:
    """Per-fruit bookkeeping that is not a tensor of the networks."""

    fruit: str
    data_gen: torch.Generator            # shuffles this fruit's data (on the training device)
    noise_gen: torch.Generator           # draws this fruit's training noise (on the training device)
    fixed_noise: torch.Tensor            # (GRID_SIDE^2, nz): the same grid at every milestone
    history: dict = field(default_factory=dict)
    cost: Optional[dict] = None          # cost section so far (cost_analysis_training)
    best_score: float = -math.inf


class MultiFruitGANTrainer:
    """Trains one GAN per fruit of a dataset version and writes the models/model_<name>/ tree."""

    def __init__(self, config: TrainConfig, workdir: Path, *, overwrite: bool = False, resume: bool = False,
                 log: Callable[[str], None] = print, pricing_path: Optional[Path] = None,
                 cost_tracker: Optional[cost_mod.CostTracker] = None, dist: Optional[DistInfo] = None):
        self.cfg = config
        self.workdir = Path(workdir)
        self.log = log
        self.dist = dist or DistInfo()
        self.resume = resume
        self.overwrite = overwrite
        check_name(config.model_name, "model name")
        check_name(config.dataset_version, "dataset version")
        self.store = ModelFolder.in_workdir(self.workdir, config.model_name, self.dist.rank, self.dist.world)
        self.pricing = cost_mod.load_pricing(pricing_path)
        self.tracker = cost_tracker or cost_mod.CostTracker(self.pricing)
        self.device = resolve_device(config.device if not self.dist.world > 1 or config.device != "auto"
                                     else ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda" and self.dist.world > 1:
            self.device = torch.device(f"cuda:{self.dist.local_rank}")
        if self.dist.is_main:   # a run writing this model now: say so before anything else
            refuse_if_held(self.store.path, f"model {config.model_name}", LOCK_ADVICE)
        self._check_model_dir(overwrite)
        self.start_epoch = 1
        # The arithmetic this run uses, fixed in its saved settings (a resume keeps it unless --precision is given).
        self.requested_precision = self.cfg.precision
        self.created: Optional[str] = None      # when the model's first run began; a resume keeps it
        if resume:
            self.requested_precision = self._load_saved_config()
        self.cfg = replace(self.cfg, precision=resolve_precision(self.cfg.precision, self.device))
        self.datasets = data_loader.load_version(self.workdir, self.cfg.dataset_version, self.cfg.fruits)
        self.all_fruits = list(self.datasets)
        self.fruits = self.all_fruits[self.dist.rank::self.dist.world]   # this rank's share
        first = next(iter(self.datasets.values()))
        self.resolution = first.resolution
        self.gan_config = GANConfig(resolution=self.resolution, lr=self.cfg.lr, ema_decay=self.cfg.ema_decay,
                                    real_label=self.cfg.real_label)
        self._check_numbers()
        self.states: Dict[str, FruitState] = {f: self._new_fruit_state(f) for f in self.fruits}
        self.groups = self._make_groups()
        # Only the training part: the held-out real drawings (and copies of them) are never trained on.
        self.data = {f: self.datasets[f].train_images.to(self.device) for f in self.fruits}   # (N,1,R,R), resident
        self.evaluator = None
        self.milestones = milestone_epochs(self.cfg.milestones, self.cfg.epochs)
        self.checkpoints = CheckpointWriter()        # checkpoint files, serialised off the training thread
        self.run_timing: dict = {}                   # estimate vs actual and where the time went (summary)

    # ------------------------------------------------------------------ set-up
    def _check_numbers(self) -> None:
        # Every setting within its declared bounds; the device was checked by resolve_device (it allows cuda:N).
        checked = [s for s in settings.TRAIN_SETTINGS if s is not settings.DEVICE]
        settings.check_values(self.cfg.to_dict(), checked, "training settings", "fix that setting")
        if not self.fruits:
            raise UserError(f"rank {self.dist.rank} of {self.dist.world} has no fruit to train; "
                            f"use at most {len(self.all_fruits)} processes")

    def _check_model_dir(self, overwrite: bool) -> None:
        exists = self.store.exists()
        if self.resume:
            if not exists:
                raise UserError(f"no model {self.cfg.model_name!r} to resume in {self.store.path}; "
                                "train it first (without --resume)")
            return
        if exists and not overwrite:
            raise UserError(f"model {self.cfg.model_name!r} already exists in {self.store.path}; choose another "
                            "--model-name, continue it with --resume, or replace it with --overwrite")

    def _load_saved_config(self) -> str:
        """A resumed run trains on with its saved settings: the given config may only change what
        TrainConfig.resumed allows (train_gan.py builds it that way from the saved file). Returns the precision
        the user asked for: the saved request (e.g. "auto") while the saved arithmetic is kept."""
        saved = self.store.read_config()
        if saved is None:
            raise UserError(f"model {self.cfg.model_name!r} has no readable saved settings in {self.store.info_dir}; "
                            "train it again with --overwrite")
        source = f"saved settings of model {self.cfg.model_name!r}"
        given = self.cfg.to_dict()
        if given["fruits"] is None:   # "every fruit of the version": the saved list says which those were
            del given["fruits"]
        self.cfg = TrainConfig.from_saved(saved, source).resumed(given)
        self.created = saved.get("created") if isinstance(saved.get("created"), str) else None
        if self.cfg.precision == saved.get("precision"):
            return saved.get("requested_precision") or self.cfg.precision
        return self.cfg.precision

    def _new_fruit_state(self, fruit: str) -> FruitState:
        s = fruit_seed(self.cfg.seed, fruit)
        # On the training device, so no step waits for a host-to-device copy; on a CPU the streams are
        # the same as torch's default generator seeded alike (runs stay reproducible with a fixed seed).
        data_gen = torch.Generator(device=self.device).manual_seed(s)
        noise_gen = torch.Generator(device=self.device).manual_seed(s + 1)
        fixed = torch.randn(GRID_SIDE * GRID_SIDE, self.gan_config.noise_dim,
                            generator=torch.Generator().manual_seed(s + 2))
        history = {"fruit": fruit, "model_name": self.cfg.model_name, "dataset_version": self.cfg.dataset_version,
                   "num_images": len(self.datasets[fruit]), "num_real_images": int((~self.datasets[fruit].augmented).sum()),
                   "num_train_images": int(self.datasets[fruit].train_images.shape[0]),
                   "num_heldout_real_images": int(self.datasets[fruit].heldout_images.shape[0]),
                   "split_note": self.datasets[fruit].split_note,
                   "epochs": [], "quality": [], "reference_quality": None, "best_epoch": None}
        return FruitState(fruit, data_gen, noise_gen, fixed, history)

    def _make_groups(self) -> List[List[str]]:
        """Fruits with equal dataset sizes share every step's batch sizes, so they can step together."""
        if self.cfg.schedule == "sequential":
            return [[f] for f in self.fruits]
        by_size: Dict[int, List[str]] = {}
        for f in self.fruits:
            by_size.setdefault(int(self.datasets[f].train_images.shape[0]), []).append(f)
        return list(by_size.values())

    def _build_models(self) -> None:
        torch.manual_seed(self.cfg.seed)   # weight initialisation
        if self.device.type == "cpu":
            tune_cpu_allocator()           # each step frees and re-allocates the same big buffers
        cuda_graph = self.cfg.cuda_graph and self.device.type == "cuda"
        self.models = [GroupedGAN(self.gan_config, len(g), device=self.device, precision=self.cfg.precision,
                                  compile=self.cfg.compile, cuda_graph=cuda_graph)
                       for g in self.groups]

    # ------------------------------------------------------------------ training
    def _batches(self, group: List[str]):
        """Yield (real (F,b,1,R,R), noise (F,b,nz)) for one epoch of a group, each fruit in its own order."""
        # Everything is drawn and indexed on the device: no host work or copy inside the epoch.
        n = len(self.data[group[0]])
        perms = [torch.randperm(n, generator=self.states[f].data_gen, device=self.device) for f in group]
        bs, nz = self.cfg.batch_size, self.gan_config.noise_dim
        for start in range(0, n, bs):
            real = torch.stack([self.data[f][p[start:start + bs]] for f, p in zip(group, perms)])
            noise = torch.stack([torch.randn(real.shape[1], nz, generator=self.states[f].noise_gen,
                                             device=self.device) for f in group])
            yield real, noise

    def train_epoch(self, gi: int) -> Dict[str, dict]:
        """One epoch of group ``gi``; returns per-fruit mean losses and D outputs."""
        group, model = self.groups[gi], self.models[gi]
        sums, steps = None, 0
        for real, noise in self._batches(group):
            out = model.train_step(real, noise)                           # dict of (F,) tensors
            sums = {k: v.detach().float() for k, v in out.items()} if sums is None else \
                {k: sums[k] + out[k].detach().float() for k in sums}
            steps += 1
        means = {k: (v / steps).cpu().tolist() for k, v in sums.items()}    # one sync per epoch
        return {f: {k: means[k][i] for k in means} for i, f in enumerate(group)}

    def estimate_epoch_seconds(self, gi: int, epochs: int = 1) -> float:
        """Seconds per epoch of group ``gi`` from steps timed on a throw-away copy (RNG untouched), for the ETA
        printed before a run of ``epochs`` epochs."""
        group = self.groups[gi]
        probe = copy.deepcopy(self.models[gi])
        n = len(self.data[group[0]])
        b = min(self.cfg.batch_size, n)
        steps = math.ceil(n / self.cfg.batch_size)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            real = torch.stack([self.data[f][:b] for f in group])
            noise = torch.randn(len(group), b, self.gan_config.noise_dim, device=self.device)
            probe.train_step(real, noise)                                  # warm-up (allocations, kernels)
            self._sync()
            t0, timed = time.perf_counter(), 0
            while timed < ETA_PROBE_STEPS or (timed < ETA_PROBE_MAX_STEPS and self._probe_may_go_on(
                    time.perf_counter() - t0, timed, steps * epochs)):
                probe.train_step(real, noise)
                timed += 1
                self._sync()
        return (time.perf_counter() - t0) / timed * steps

    @staticmethod
    def _probe_may_go_on(elapsed: float, timed: int, run_steps: int) -> bool:
        """Time more steps while under ETA_PROBE_SECONDS and under ETA_PROBE_SHARE of the run's own steps."""
        return elapsed < min(ETA_PROBE_SECONDS, ETA_PROBE_SHARE * elapsed / timed * run_steps)

    def _probe_milestone_seconds(self, gi: int) -> dict:
        """One milestone's work for group ``gi``, timed without writing anything (RNG untouched); also the
        figures it measured ({fruit: figures}, empty without evaluation), for the plot probe."""
        group, model = self.groups[gi], self.models[gi]
        t0 = time.perf_counter()
        fixed = torch.stack([self.states[f].fixed_noise for f in group]).to(self.device)
        grids = model.generate(fixed)
        for i in range(len(group)):
            image_grid(grids[i]).save(io.BytesIO(), format="PNG")
        images = time.perf_counter() - t0
        evaluation, figures = 0.0, {}
        if self.evaluator is not None:
            t0 = time.perf_counter()
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                figures = self._quality_figures(gi, self.start_epoch)   # a milestone's work, kept nowhere
            evaluation = time.perf_counter() - t0
        return {"milestone_images": images, "evaluation": evaluation, "figures": figures}

    def _probe_plot_seconds(self, last: int, figures: dict) -> float:
        """One history plot as the run will draw it, into a throw-away folder: a stand-in history with a row
        per epoch up to ``last`` and ``figures`` (one fruit's quality figures) at each milestone, since a plot
        with quality panels takes several times as long as the empty one a new run starts with."""
        import tempfile

        import training_plots

        f = self.fruits[0]
        row = {"d_loss": 0.7, "g_loss": 1.0, "d_real": 0.6, "d_fake": 0.4, "seconds": 1.0}
        marks = [e for e in sorted(self.milestones) if e <= last] if figures else []
        stand_in = {**self.states[f].history, "epochs": [{"epoch": e, **row} for e in range(1, last + 1)],
                    "quality": [{**figures, "epoch": e} for e in marks]}
        with tempfile.TemporaryDirectory(prefix="plot_probe_") as tmp:
            training_plots.plot_fruit_history(self.states[f].history, Path(tmp) / "warm_up.png")   # the import
            t0 = time.perf_counter()
            training_plots.plot_fruit_history(stand_in, Path(tmp) / "probe.png")
            return time.perf_counter() - t0

    def _probe_checkpoint_seconds(self) -> float:
        """A checkpoint's snapshot and serialisation, into memory."""
        t0 = time.perf_counter()
        torch.save(self._checkpoint_snapshot(self.start_epoch - 1), io.BytesIO())
        return time.perf_counter() - t0

    def estimate_run(self, first: int, last: int) -> dict:
        """Measured estimate of epochs ``first..last``: steps, milestones (grids, evaluation, plots), checkpoints.

        Returns {"per_fruit": {fruit: s}, "parts": {part: s}, "total": s}; a fruit stepped with others
        gets its share of the group's time.
        """
        epochs = max(0, last - first + 1)
        marks = sum(1 for e in self.milestones if first <= e <= last)
        parts = dict.fromkeys(("steps", "evaluation", "milestone_images", "checkpoints"), 0.0)
        per_fruit: Dict[str, float] = {}
        probes = [self._probe_milestone_seconds(gi) for gi in range(len(self.groups))]
        figures = next(iter(probes[0]["figures"].values()), {})
        plot = self._probe_plot_seconds(last, figures) if epochs else 0.0
        parts["milestone_images"] += plot                # the all-fruit figure at the end: about one plot's time
        for gi, group in enumerate(self.groups):
            steps = self.estimate_epoch_seconds(gi, epochs) * epochs
            probe = probes[gi]
            images = probe["milestone_images"] * marks + plot * len(group) * (marks + 1)
            evaluation = probe["evaluation"] * marks
            parts["steps"] += steps
            parts["milestone_images"] += images
            parts["evaluation"] += evaluation
            per_fruit.update({f: (steps + images + evaluation) / len(group) for f in group})
        cadence = self.cfg.checkpoint_minutes * 60.0
        by_time = int(parts["steps"] // cadence) if cadence else epochs
        fixed = sum(1 for e in checkpoint_epochs(last, self.milestones, self.cfg.keep_checkpoint_every) if e >= first)
        parts["checkpoints"] = self._probe_checkpoint_seconds() * min(epochs, fixed + by_time)
        return {"per_fruit": per_fruit, "parts": parts, "total": sum(parts.values())}

    def _log_estimate(self, estimate: dict, first: int, last: int) -> None:
        self.log(f"estimated time for epochs {first}-{last} (measured on this machine):")
        for f, seconds in estimate["per_fruit"].items():
            shared = next(g for g in self.groups if f in g)
            note = f" (its share: stepped together with {', '.join(x for x in shared if x != f)})" \
                if len(shared) > 1 else ""
            self.log(f"  {f:<10} {_fmt_duration(seconds)}{note}")
        parts = estimate["parts"]
        self.log(f"  checkpoints {_fmt_duration(parts['checkpoints'])}; total {_fmt_duration(estimate['total'])} "
                 f"(steps {_fmt_duration(parts['steps'])}, evaluation {_fmt_duration(parts['evaluation'])}, "
                 f"images and plots {_fmt_duration(parts['milestone_images'])})")

    def _barrier(self) -> None:
        if self.dist.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # ------------------------------------------------------------------ milestones and evaluation
    def _setup_evaluator(self) -> None:
        if not self.cfg.evaluate:
            return
        import gan_evaluation

        real = {f: d.images for f, d in self.datasets.items()}
        classifier, info = gan_evaluation.load_or_train_classifier(
            self.workdir, self.cfg.dataset_version, real,
            source_index_by_fruit={f: d.source_index for f, d in self.datasets.items()},
            augmented_by_fruit={f: d.augmented for f, d in self.datasets.items()},
            device=self.device, seed=self.cfg.seed)
        real_only = {f: d.real_images for f, d in self.datasets.items()}
        self.evaluator = gan_evaluation.QualityEvaluator(classifier, list(self.datasets), real_only, device=self.device)
        self.quality_score = gan_evaluation.quality_score
        self.classifier_info = info
        self._setup_recognizer(gan_evaluation)
        for f in self.fruits:
            ref = self.evaluator.reference(f)
            if self.recognizer is not None:
                ref.update(self._recognizer_reference(f))
            self.states[f].history["reference_quality"] = ref
        acc = info.get("heldout_accuracy")
        self.log(f"quality classifier: held-out accuracy on real drawings "
                 f"{acc:.1%}" if isinstance(acc, float) else "quality classifier ready")

    def _setup_recognizer(self, gan_evaluation) -> None:
        """The all-fruit recogniser (rawData/, this version's held-out drawings excluded, in the dataset's
        formats); None with a note when rawData/ has too few fruits (no one-class verdicts)."""
        held = [d.heldout_images for d in self.datasets.values() if d.has_split]
        formats = {f: d.metadata["formats"] for f, d in self.datasets.items() if isinstance(d.metadata.get("formats"), list)}
        self.recognizer, self.recognizer_info = gan_evaluation.load_or_train_recognizer(
            self.workdir, self.cfg.dataset_version, self.resolution,
            exclude_images=torch.cat(held) if held else None, formats=formats, device=self.device,
            seed=self.cfg.seed, log=self.log)
        if self.recognizer is None:
            self.log(f"all-fruit recogniser: {self.recognizer_info['note']} (recognisability falls back to the "
                     "dataset's classifier, refused when it knows one fruit only)")

    def _recognition(self, fruit: str, images: torch.Tensor) -> dict:
        """recognizability/confidence of ``images`` by the all-fruit recogniser, or a note why there is none."""
        import gan_evaluation

        if fruit not in self.recognizer.fruits:
            return {"recognizability_note": f"the recogniser has too few real {fruit} drawings in rawData/ to know it"}
        if images.shape[0] == 0:
            return {}
        _, probs = gan_evaluation.predict(self.recognizer, images, self.device)      # (N, F)
        label = self.recognizer.fruits.index(fruit)
        return {"recognizability": (probs.argmax(dim=1) == label).double().mean().item(),
                "confidence": probs[:, label].double().mean().item()}

    def _recognizer_reference(self, fruit: str) -> dict:
        """The recogniser on this fruit's held-out real drawings (never trained on): its verdicts' ceiling."""
        found = self._recognition(fruit, self.datasets[fruit].heldout_images)
        if "recognizability" not in found:
            return {"heldout_recognizability": None,
                    "recognizability_note": found.get("recognizability_note", self.datasets[fruit].split_note),
                    **self._recognizer_pooled_reference()}
        return {"heldout_recognizability": found["recognizability"], "recognizability_note": None}

    def _recognizer_pooled_reference(self) -> dict:
        """Without a held-out split, the recogniser's accuracy on the real drawings it held out of its own
        training, all fruits pooled: per fruit they are a handful (5 of 25), too few to give one by one."""
        acc = self.recognizer_info.get("heldout_accuracy")
        count = sum((self.recognizer_info.get("heldout_counts") or {}).values())
        if not isinstance(acc, float) or not count:
            return {}
        return {"recognizer_heldout_accuracy": acc, "recognizer_heldout_count": int(count)}

    def _heldout_figures(self, fruit: str, fakes: torch.Tensor) -> dict:
        """two_sample_test and memorisation_ratio against this fruit's held-out split, or notes without one."""
        import gan_evaluation

        ds = self.datasets[fruit]
        if not ds.has_split:
            return {"two_sample_accuracy": None, "two_sample_note": ds.split_note,
                    "memorisation_ratio": None, "memorisation_note": ds.split_note}
        return {**gan_evaluation.two_sample_test(ds.heldout_images, fakes),
                **gan_evaluation.memorisation_ratio(fakes, ds.train_images, ds.heldout_images)}

    def _write_progress_grids(self, gi: int, epoch: int) -> None:
        """Progress grid from the fixed noise for each fruit of group ``gi``."""
        group, model = self.groups[gi], self.models[gi]
        fixed = torch.stack([self.states[f].fixed_noise for f in group]).to(self.device)
        grids = model.generate(fixed)                                       # (F, 64, 1, R, R)
        for i, f in enumerate(group):
            self.store.write_progress_grid(image_grid(grids[i]), f, epoch)

    def _quality_figures(self, gi: int, epoch: int) -> Dict[str, dict]:
        """{fruit: figures} of group ``gi``'s generators at ``epoch``: classifier figures, recognisability and
        the held-out two-sample test and memorisation ratio. Draws from its own noise stream only."""
        group, model = self.groups[gi], self.models[gi]
        gen = torch.Generator().manual_seed(self.cfg.seed * SEED_STRIDE + EVAL_SEED_OFFSET + epoch)
        noise = torch.randn(len(group), self.cfg.eval_samples, self.gan_config.noise_dim, generator=gen).to(self.device)
        samples = model.generate(noise)                                     # (F, S, 1, R, R)
        figures = {}
        for i, f in enumerate(group):
            fakes = samples[i].float()
            metrics = {"epoch": epoch, **self.evaluator.evaluate(f, fakes)}
            if self.recognizer is not None:
                # Recognisability from the all-fruit recogniser (never a one-class classifier).
                for key in ("recognizability", "confidence", "recognizability_note"):
                    metrics.pop(key, None)
                metrics.update(self._recognition(f, fakes))
            else:   # fallback: the dataset classifier's verdict (refused by it when it knows one fruit only)
                metrics["recognizer_note"] = self.recognizer_info["note"]
            metrics.update(self._heldout_figures(f, fakes.cpu()))
            figures[f] = metrics
        return figures

    def _milestone(self, gi: int, epoch: int) -> None:
        """Quality figures for each fruit of group ``gi`` (the progress grids: _write_progress_grids), kept in
        the history; a fruit's best figures so far also save its generator as best/."""
        if self.evaluator is None:
            return
        for i, (f, metrics) in enumerate(self._quality_figures(gi, epoch).items()):
            st = self.states[f]
            st.history["quality"].append(metrics)
            score = self.quality_score(metrics)
            if score > st.best_score:
                st.best_score = score
                st.history["best_epoch"] = epoch
                self._save_generator(gi, i, f, epoch, best=True, metrics=metrics, score=score)
            self.log(f"  quality {f:<10} epoch {epoch}: {_milestone_figures(metrics)}")

    # ------------------------------------------------------------------ files
    def _plain_network(self, cls, state: dict):
        """A gan_model Generator/Discriminator holding ``state``. Built under a forked RNG: its throw-away
        initialisation must not move the training's random stream (a resume would then differ from a run
        that never stopped)."""
        with torch.random.fork_rng(devices=[]):
            net = cls(self.gan_config)
        net.load_state_dict(state)
        return net

    def _save_generator(self, gi: int, i: int, fruit: str, epoch: int, best: bool = False, **extra) -> None:
        states = self.models[gi].fruit_state_dicts(i)
        g = self._plain_network(Generator, states["generator"])
        self.store.write_network(network_payload(g, self.gan_config, "generator", fruit=fruit, epoch=epoch,
                                                 ema_state_dict=states.get("ema"), **extra), best=best)

    def save_networks(self, epoch: int) -> None:
        """generator_<fruit>.pt and discriminator_<fruit>.pt: the latest weights, rebuildable alone."""
        for gi, group in enumerate(self.groups):
            for i, f in enumerate(group):
                self._save_generator(gi, i, f, epoch)
                d = self._plain_network(Discriminator, self.models[gi].fruit_state_dicts(i)["discriminator"])
                self.store.write_network(network_payload(d, self.gan_config, "discriminator", fruit=f, epoch=epoch))

    def save_checkpoint(self, epoch: int) -> None:
        """Everything needed to continue: weights, optimizers, RNG states, histories, cost so far.

        The snapshot (CPU copies) is taken now, so the file is this epoch's whatever training does next;
        the writer's thread serialises it (one write at a time, atomically).
        """
        ckpt = self._checkpoint_snapshot(epoch)
        every = self.cfg.keep_checkpoint_every
        keep = bool(every and epoch % every == 0)
        self.checkpoints.submit(lambda: self.store.write_checkpoint(ckpt, epoch, keep=keep))

    def _checkpoint_snapshot(self, epoch: int) -> dict:
        ckpt = {
            "format": CHECKPOINT_FORMAT,
            "epoch": epoch,
            "gan_config": self.gan_config.to_dict(),
            # Per fruit, in the plain networks' format: a checkpoint does not depend on how fruits were grouped.
            "fruits": {f: {**self.models[gi].fruit_state_dicts(i),
                           "optimizers": self.models[gi].fruit_optimizer_states(i)}
                       for gi, g in enumerate(self.groups) for i, f in enumerate(g)},
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
                "fruits": {f: {"data": s.data_gen.get_state(), "noise": s.noise_gen.get_state()}
                           for f, s in self.states.items()},
            },
            # copies: training appends to these while the writer's thread pickles them
            "history": copy.deepcopy({f: s.history for f, s in self.states.items()}),
            "cost": copy.deepcopy({f: s.cost for f, s in self.states.items()}),
            "best_score": {f: s.best_score for f, s in self.states.items()},
        }
        return ckpt

    def load_checkpoint(self) -> int:
        """Restore the latest checkpoint; returns the next epoch to train."""
        if not self.store.checkpoint_path("latest").exists() and not self.store.kept_checkpoints():
            # Stopped before its first epoch ended (only the config was written): start over, same settings.
            self.log(f"model {self.cfg.model_name!r} has no checkpoint yet: starting at epoch 1 with its saved settings")
            return 1
        ckpt = self.store.read_checkpoint("latest", map_location=self.device)
        missing = [f for f in self.fruits if f not in ckpt["fruits"]]
        if missing:
            raise UserError(f"checkpoint {self.store.checkpoint_path('latest').name} has no {', '.join(missing)}; "
                            "resume with the same fruits")
        for gi, group in enumerate(self.groups):
            for i, f in enumerate(group):
                self.models[gi].load_fruit_state_dicts(i, ckpt["fruits"][f])
                self.models[gi].load_fruit_optimizer_states(i, ckpt["fruits"][f]["optimizers"])
        torch.set_rng_state(ckpt["rng"]["torch"].cpu())
        if self.device.type == "cuda" and ckpt["rng"]["cuda"]:
            torch.cuda.set_rng_state_all([s.cpu() for s in ckpt["rng"]["cuda"]])
        for f, s in self.states.items():
            self._restore_fruit_rng(s, ckpt["rng"]["fruits"][f])
            s.history = ckpt["history"][f]
            s.cost = ckpt["cost"][f]
            s.best_score = ckpt["best_score"][f]
        return int(ckpt["epoch"]) + 1

    def _restore_fruit_rng(self, state: FruitState, saved: dict) -> None:
        """The fruit's generators live on the training device: a CPU run's states do not fit a GPU's."""
        try:
            state.data_gen.set_state(saved["data"].cpu())
            state.noise_gen.set_state(saved["noise"].cpu())
        except RuntimeError:
            raise UserError(f"checkpoint of model {self.cfg.model_name!r} was written on another kind of device "
                            f"than {self.device.type}; resume it with the --device it was trained on") from None

    def write_config(self) -> None:
        if not self.dist.is_main:
            return
        data = {"model_name": self.cfg.model_name, **self.cfg.to_dict(), "fruits": self.all_fruits,
                "resolution": self.resolution, "gan_config": self.gan_config.to_dict(),
                "device": str(self.device), "requested_device": self.cfg.device,
                "requested_precision": self.requested_precision, "world_size": self.dist.world,
                "dataset": self.dataset_info(), "created": self.created or _now()}
        self.store.write_config(data)

    def dataset_info(self) -> dict:
        return {"version": self.cfg.dataset_version, "resolution": self.resolution, "fruits": self.all_fruits,
                "images": {f: len(d) for f, d in self.datasets.items()},
                "real_images": {f: int((~d.augmented).sum()) for f, d in self.datasets.items()},
                "augmentation": {f: d.metadata.get("augmentation") for f, d in self.datasets.items()},
                "quality": {f: d.metadata.get("quality") for f, d in self.datasets.items()}}

    def write_histories(self) -> None:
        for f, s in self.states.items():
            doc = dict(s.history)
            if s.cost:
                doc["cost"] = s.cost
                doc.update(cost_mod.cost_fields_for_history(s.cost))
            self.store.write_history(f, doc)

    def _fruit_summary(self, f: str) -> dict:
        s = self.states[f]
        last = s.history["epochs"][-1] if s.history["epochs"] else {}
        best = next((q for q in s.history["quality"] if q["epoch"] == s.history["best_epoch"]), None)
        return {"final": {k: last.get(k) for k in ("epoch", "d_loss", "g_loss", "d_real", "d_fake")},
                "best_epoch": s.history["best_epoch"],
                "quality": s.history["quality"][-1] if s.history["quality"] else None,
                "best_quality": best, "reference_quality": s.history["reference_quality"],
                "num_images": s.history["num_images"], "num_real_images": s.history["num_real_images"],
                "cost": s.cost}

    def write_summary(self, epochs_done: int, status: str) -> None:
        """training_summary_<name>.json (rank 0 gathers every rank's fruits under torchrun)."""
        per_fruit = {f: self._fruit_summary(f) for f in self.fruits}
        if self.dist.world > 1:
            import torch.distributed as dist

            parts: List[Optional[dict]] = [None] * self.dist.world
            dist.all_gather_object(parts, per_fruit)
            per_fruit = {k: v for p in parts for k, v in p.items()}
        if not self.dist.is_main:
            return
        sections = {f: v["cost"] for f, v in per_fruit.items() if v.get("cost")}
        summary = {"model_name": self.cfg.model_name, "dataset_version": self.cfg.dataset_version,
                   "resolution": self.resolution, "fruits": self.all_fruits, "epochs_done": epochs_done,
                   "epochs_planned": self.cfg.epochs, "status": status, "device": str(self.device),
                   "precision": self.cfg.precision, "world_size": self.dist.world,
                   "created": self.created or _now(), "updated": _now(),
                   "per_fruit": per_fruit, **self.run_timing}
        if sections:
            report = cost_mod.build_cost_report(sections, self.store.path, self.cfg.to_dict(), self.pricing)
            summary["cost"] = {k: report[k] for k in report if k not in ("per_fruit", "fruits")}
            self.store.write_cost_report(report)
            self.store.write_description(cost_mod.description_text(
                self.cfg.description, self.dataset_info(), self.cfg.to_dict(), sections, report))
        self.store.write_summary(summary)
        update_index(self.workdir, self.cfg.model_name)     # models_index.json follows the run as it goes

    # ------------------------------------------------------------------ the run
    def train(self) -> dict:
        """Train every fruit to ``epochs`` (holding the model folder); returns the summary of this rank's fruits."""
        with self._ownership():
            return self._train()

    @contextlib.contextmanager
    def _ownership(self):
        """The model folder's RunLock, taken before --overwrite's delete and the first write, held to the end.

        Under torchrun only rank 0 takes it: the ranks of one run share the folder (each writes its own
        checkpoint files), and rank 0's lock already keeps every other run out of it.
        """
        if not self.dist.is_main:
            yield
            return
        with RunLock(self.store.path, f"model {self.cfg.model_name}", LOCK_ADVICE):
            self._check_model_dir(self.overwrite)   # again: another run may have finished it since __init__
            clean_stale_temp(self.store.path, remove_unknown_owner=True)   # dead runs' temp files
            yield

    def _train(self) -> dict:
        """Train every fruit to ``epochs``; returns the summary of this rank's fruits.

        Ctrl+C or SIGTERM: the epoch in progress finishes, a checkpoint is written and user_io.Interrupted
        says how to continue; a second Ctrl+C stops at once (back to the last checkpoint).
        """
        if self.overwrite and not self.resume and self.dist.is_main:
            self.store.remove()             # asked for explicitly: the old model's files must not mix in
        self._barrier()
        self._build_models()
        self.created = self.created or _now()
        if self.resume:
            self.start_epoch = self.load_checkpoint()
            self.log(f"resuming model {self.cfg.model_name!r} at epoch {self.start_epoch} of {self.cfg.epochs}")
        self.write_config()
        self._setup_evaluator()
        last = self.cfg.epochs
        if self.cfg.stop_after_epochs:
            last = min(last, self.start_epoch - 1 + self.cfg.stop_after_epochs)
        self.log(f"training {len(self.fruits)} fruit(s) {', '.join(self.fruits)} at {self.resolution}px on "
                 f"{self.device} ({self.cfg.precision}), batch {self.cfg.batch_size}, epochs "
                 f"{self.start_epoch}-{last} of {self.cfg.epochs}; groups stepped together: {self.groups}")
        if self.device.type == "cpu" and self.cfg.precision == "fp32" and cpu_has_bf16():
            self.log("this CPU has bf16 arithmetic: --precision bf16 (or auto, the default) trains faster "
                     "(README: How fast training is; it rounds more coarsely, see the quality check there)")
        estimate = self.estimate_run(self.start_epoch, last)
        self._log_estimate(estimate, self.start_epoch, last)
        self.clock = RunClock()
        self.run_timing = {"estimate": {"seconds": round(estimate["total"], 1),
                                        "per_fruit": {f: round(v, 1) for f, v in estimate["per_fruit"].items()}}}
        self.saved_epoch = self.start_epoch - 1    # last epoch whose checkpoint (and histories) are on disk
        self.epoch_running = self.start_epoch
        done, status = self.saved_epoch, "interrupted"
        progress = FruitProgress(self.fruits, self.start_epoch, last, enabled=self.dist.is_main, log=self.log)
        try:
            with StopRequest(self._stop_message) as stop:
                done = self._epochs(self.start_epoch, last, progress, stop)
            status = "complete" if done >= self.cfg.epochs else "stopped"
            self._finish(done, status, estimate)
        except Interrupted:
            raise
        except KeyboardInterrupt:           # a second Ctrl+C: stop now, back to the last checkpoint
            raise Interrupted(self._continue_hint(self.epoch_running, finished=False)) from None
        finally:
            progress.close()
            self.checkpoints.wait()         # never leave with a write half done
            self.tracker.close()
            if status == "interrupted":
                self._mark_interrupted(self.saved_epoch)
        for f in self.fruits:
            if self.states[f].cost:
                self.log(cost_mod.format_cost_summary(f, self.states[f].cost))
        self.log(f"model saved in {self.store.path} (status: {status}, epoch {done} of {self.cfg.epochs})")
        return {f: self._fruit_summary(f) for f in self.fruits}

    def _epochs(self, first: int, last: int, progress: FruitProgress, stop: StopRequest) -> int:
        """Epochs first..last with checkpoints on the cadence; returns the last epoch trained.

        A stop request ends the loop after the epoch in progress, with a checkpoint, as Interrupted.
        """
        cadence = Cadence(self.cfg.checkpoint_minutes)
        fixed = checkpoint_epochs(last, self.milestones, self.cfg.keep_checkpoint_every)
        for epoch in range(first, last + 1):
            self.epoch_running = epoch
            rows = self.run_epoch(epoch)
            for f, row in rows.items():
                progress.update(f, row)
            milestone = epoch in self.milestones
            if milestone:
                for f, row in rows.items():
                    progress.write(f"epoch {epoch:>4}/{self.cfg.epochs} {f:<10} D loss {row['d_loss']:.4f}  "
                                   f"G loss {row['g_loss']:.4f}  D(x) {row['d_real']:.3f}  "
                                   f"D(G(z)) {row['d_fake']:.3f}")
            due, stopping = self._agree(epoch in fixed or cadence.due(), bool(stop.requested))
            if due or stopping:
                self._save_epoch(epoch, milestone, "running")
                cadence.mark()
            if milestone:
                self._plot_histories()
            if stopping and epoch < last:       # at the last epoch the run simply ends
                raise Interrupted(self._continue_hint(epoch))
        return last

    def _agree(self, *flags: bool) -> tuple:
        """Under torchrun every rank must write (and gather) together: a flag holds if it holds on any rank."""
        if self.dist.world <= 1:
            return flags
        import torch.distributed as dist

        parts: List[Optional[tuple]] = [None] * self.dist.world
        dist.all_gather_object(parts, tuple(flags))
        return tuple(any(p[i] for p in parts) for i in range(len(flags)))

    def _save_epoch(self, epoch: int, networks: bool, status: str) -> None:
        """The checkpoint, the plain networks (at milestones) and the JSON files, all of epoch ``epoch``."""
        with self.clock.part("checkpoints"):
            self.save_checkpoint(epoch)
            if networks:
                self.save_networks(epoch)
        self.saved_epoch = epoch
        with self.clock.part("history_writes"):
            self.run_timing["time"] = self.clock.breakdown()
            self.write_histories()
            self.write_summary(epoch, status)

    def _plot_histories(self) -> None:
        """info/training_history_<fruit>.png for this rank's fruits, redrawn (atomically) from memory."""
        import training_plots

        with self.clock.part("milestone_images"):
            for f, s in self.states.items():
                training_plots.plot_fruit_history(s.history, self.store.history_plot_path(f))

    def _plot_all_fruits(self) -> None:
        """info/training_history_all.png (main rank: other ranks' fruits come from their history files)."""
        if not self.dist.is_main:
            return
        import training_plots

        with self.clock.part("milestone_images"):
            histories = {f: self.states[f].history if f in self.states else self.store.read_history(f)
                         for f in self.all_fruits}
            training_plots.plot_all_fruits({f: h for f, h in histories.items() if h},
                                           self.store.all_histories_plot_path())

    def _finish(self, done: int, status: str, estimate: dict) -> None:
        """The end of a run: networks, final files and plots, and how close the estimate was."""
        # The networks of the last epoch; also when a resume found it checkpointed but killed before them.
        if done >= 1 and (done not in self.milestones or done < self.start_epoch):
            with self.clock.part("checkpoints"):
                self.save_networks(done)
        if done >= self.start_epoch:
            if done not in self.milestones:
                self._plot_histories()
            self._plot_all_fruits()
        with self.clock.part("checkpoints"):
            self.checkpoints.wait()        # the summary's timing includes the last write
        actual = self.clock.elapsed()
        self.run_timing["estimate"]["actual_seconds"] = round(actual, 1)
        self.run_timing["time"] = self.clock.breakdown()
        with self.clock.part("history_writes"):
            self.write_summary(done, status)
        if done >= self.start_epoch:
            off = (actual - estimate["total"]) / estimate["total"] if estimate["total"] else 0.0
            self.log(f"time: estimated {_fmt_duration(estimate['total'])}, took {_fmt_duration(actual)} "
                     f"({off:+.0%}); " + ", ".join(f"{k} {v:.1f}s" for k, v in self.run_timing["time"].items()
                                                     if k != "total"))

    def _stop_message(self, signal_name: str) -> str:
        what = "Ctrl+C" if signal_name == "SIGINT" else signal_name
        return (f"{what}: finishing this epoch, then saving a checkpoint and stopping "
                f"(Ctrl+C again stops now; training goes back to the checkpoint of epoch {self.saved_epoch})")

    def _continue_hint(self, epoch: int, finished: bool = True) -> str:
        """What can be continued after a stop at (or, not ``finished``, during) ``epoch``, and how."""
        cmd = f"python {TRAIN_SCRIPT} --resume --model-name {self.cfg.model_name}"
        if self.workdir.resolve() != Path.cwd().resolve():
            cmd += f" --workdir {self.workdir}"
        if self.dist.world > 1:
            cmd = f"the same torchrun command with: {cmd.replace('python ', '')}"
        where = f"stopped at epoch {epoch} of {self.cfg.epochs}" if finished else \
            f"stopped during epoch {epoch} of {self.cfg.epochs}"
        if not self.saved_epoch:
            return f"{where}; no checkpoint yet: train it again with --overwrite"
        saved = "checkpoint saved" if self.saved_epoch == epoch else \
            f"checkpoint of epoch {self.saved_epoch} kept (later epochs are lost)"
        return f"{where}; {saved}; continue with: {cmd}"

    def _mark_interrupted(self, done: int) -> None:
        """Say so in the summary; everything else stays as the last checkpoint's write left it."""
        if not self.dist.is_main:
            return
        summary = self.store.read_summary()
        if summary is None:
            return
        summary.update(status="interrupted", epochs_done=done, updated=_now())
        self.store.write_summary(summary)

    def run_epoch(self, epoch: int) -> Dict[str, dict]:
        """One epoch of every group (and its milestone work); returns each fruit's history row."""
        rows: Dict[str, dict] = {}
        clock = getattr(self, "clock", None) or RunClock()
        for gi, group in enumerate(self.groups):
            self.tracker.begin(group, previous={f: self.states[f].cost for f in group})
            with clock.part("steps"):
                t0 = time.perf_counter()
                stats = self.train_epoch(gi)        # one host sync, at its end
                seconds = time.perf_counter() - t0
            if epoch in self.milestones:
                with clock.part("milestone_images"):
                    self._write_progress_grids(gi, epoch)
                with clock.part("evaluation"):
                    self._milestone(gi, epoch)
            sections = self.tracker.end(group, {f: 1 for f in group})
            for f in group:
                self.states[f].cost = sections[f]
                rows[f] = {"epoch": epoch, **{k: round(float(v), 6) for k, v in stats[f].items()},
                           "seconds": seconds / len(group)}
                self.states[f].history["epochs"].append(rows[f])
        return rows
