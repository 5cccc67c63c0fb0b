"""One training run's settings and the rules derived from them (no training here).

``TrainConfig`` is what train_gan.py builds from flags and prompts (each field declared in settings.py) and what a
run saves as info/training_config_<name>.json; ``resumed`` says what a resume may change and ``load_resume`` reads a
resume's saved settings (once). The rest are small rules the trainer and the benchmarks share: which device and
arithmetic a run uses, each fruit's own seed, the milestone epochs, the epochs that always checkpoint, and where a
process stands under torchrun."""
from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass
from typing import Collection, List, Optional, Sequence

import torch

from fruitgan.util import settings
from gan_model import GANConfig
from fruitgan.learn.grouped import cpu_has_bf16
from fruitgan.models.folder import ModelFolder
from fruitgan.util.safe_files import FRUITS
from fruitgan.util.user_io import UserError

MILESTONE_EVERY_AFTER = 100       # past the listed milestones, one image grid every 100 epochs
SEED_STRIDE = 1009                # per-fruit seeds: seed * SEED_STRIDE + fruit index (a prime, so no overlap)

# Settings that shaped the run's past epochs: a resumed run must keep them (the rest may change).
FIXED_ON_RESUME = ("dataset_version", "batch_size", "lr", "fruits", "seed", "schedule", "ema_decay", "real_label",
                   "g_channels", "d_channels", "beta1", "beta2", "diff_augment", "augment_p", "r1_gamma",
                   "steps_per_epoch")
# What a setting was before it existed: a run saved without it trained that way, and resumes that way.
BEFORE_IT_EXISTED = {"g_channels": 128, "d_channels": 32, "beta1": 0.5, "beta2": 0.999, "diff_augment": "none",
                     "augment_p": 1.0, "r1_gamma": 0.0}


@dataclass
class TrainConfig:
    """Everything one training run needs; saved as info/training_config_<name>.json.

    Defaults, bounds and help of each field are declared in settings.py."""

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
    schedule: str = settings.SCHEDULE.default                  # together: every fruit at once; sequential
    milestones: Sequence[int] = settings.MILESTONES.default    # epochs that get a progress grid (+ the last)
    keep_checkpoint_every: int = settings.KEEP_CHECKPOINT_EVERY.default  # epoch_NNNN.pt kept every N (0: none)
    checkpoint_minutes: float = settings.CHECKPOINT_MINUTES.default    # latest.pt at most this often (+ milestones)
    evaluate: bool = settings.EVALUATE.default                 # quality metrics at milestones
    eval_samples: int = settings.EVAL_SAMPLES.default          # generated images per fruit per evaluation
    ema_decay: float = settings.EMA_DECAY.default              # > 0: sample from a moving-average generator
    real_label: float = settings.REAL_LABEL.default            # < 1: one-sided label smoothing
    g_channels: int = settings.G_CHANNELS.default              # generator width
    d_channels: int = settings.D_CHANNELS.default              # discriminator width
    beta1: float = settings.BETA1.default                      # Adam betas, both networks
    beta2: float = settings.BETA2.default
    diff_augment: str = settings.DIFF_AUGMENT.default          # DiffAugment policy of D's inputs ("none": off)
    augment_p: float = settings.AUGMENT_P.default              # share of images each DiffAugment op touches
    r1_gamma: float = settings.R1_GAMMA.default                # R1 penalty weight (0: off)
    steps_per_epoch: Optional[int] = settings.STEPS_PER_EPOCH.default  # None: the largest fruit's one pass
    stop_after_epochs: Optional[int] = settings.STOP_AFTER_EPOCHS.default  # at most this many epochs now
    compile: bool = settings.COMPILE.default                   # torch.compile the forward passes (else eager)
    cuda_graph: bool = settings.CUDA_GRAPH.default             # CUDA only: replay each step as a CUDA graph

    def gan_config(self, resolution: int) -> GANConfig:
        """The networks and optimisers this config trains at ``resolution``."""
        return GANConfig(resolution=resolution, lr=self.lr, ema_decay=self.ema_decay, real_label=self.real_label,
                         g_channels=self.g_channels, d_channels=self.d_channels, beta1=self.beta1, beta2=self.beta2,
                         diff_augment=self.diff_augment, augment_p=self.augment_p, r1_gamma=self.r1_gamma)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def from_saved(cls, saved: dict, source: str) -> "TrainConfig":
        """The config a run saved (training_config_<name>.json); a wrong value is a one-line UserError."""
        values = {**BEFORE_IT_EXISTED, **saved}
        values["device"] = saved.get("requested_device", saved.get("device"))  # "auto" stays auto
        if not isinstance(values.get("dataset_version"), str):
            raise UserError(f"{source}: dataset_version is missing or not text; fix the file or train a new model")
        checked = settings.check_values(values, settings.TRAIN_SETTINGS, source, "fix the file or train a new model")
        return cls(**checked)

    def resumed(self, changes: dict) -> "TrainConfig":
        """This saved config with ``changes`` ({field: value} the user gave) applied.

        Settings that shaped the past epochs (FIXED_ON_RESUME) cannot change, and epochs can only grow:
        either is refused with a one-line UserError naming the flag."""
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


@dataclass
class Resumed:
    """A resume's settings, read once from the model's saved config (train_gan.py hands them to the trainer)."""

    config: TrainConfig
    requested_precision: str      # what was asked (e.g. "auto") while the saved arithmetic is kept
    created: Optional[str]        # when the model's first run began


def load_resume(folder: ModelFolder, changes: dict) -> Resumed:
    """The saved settings of ``folder``'s model, read here and only here, with ``changes`` ({field: value} the
    user gave; fruits None: the saved list) applied as TrainConfig.resumed allows; one-line UserErrors."""
    saved = folder.read_config()
    if saved is None:
        raise UserError(f"model {folder.name!r} has no readable saved settings ({folder.config_path().name} "
                        "missing or damaged); train it again with --overwrite")
    config = TrainConfig.from_saved(saved, f"saved settings of model {folder.name!r}")
    if config.model_name != folder.name:   # a hand-edited name would resume (and write into) another model
        raise UserError(f"{folder.config_path()}: model_name {config.model_name!r} is not {folder.name!r}; "
                        "fix the file or train a new model")
    config = config.resumed({k: v for k, v in changes.items() if not (k == "fruits" and v is None)})
    requested = config.precision
    if config.precision == saved.get("precision"):          # the saved arithmetic kept: so is what was asked
        requested = saved.get("requested_precision") or config.precision
    created = saved.get("created") if isinstance(saved.get("created"), str) else None
    return Resumed(config, requested, created)


def check_bounds(cfg: TrainConfig) -> None:
    """Every setting within its declared bounds (UserError); the device is resolve_device's to check."""
    checked = [s for s in settings.TRAIN_SETTINGS if s is not settings.DEVICE]
    settings.check_values(cfg.to_dict(), checked, "training settings", "choose a value within its bounds", by_flag=True)


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
    and 400-epoch runs of apple and banana were as real on the held-out tests as fp32 ones (README)."""
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_bf16() else "fp32"


def precision_hint(device: torch.device, precision: str) -> Optional[str]:
    """A line for the log when the run computes in fp32 on a CPU that multiplies bf16 in hardware."""
    if device.type == "cpu" and precision == "fp32" and cpu_has_bf16():
        return ("this CPU has bf16 arithmetic: --precision bf16 (or auto, the default) trains faster "
                "(docs/performance.md; it rounds more coarsely, see docs/quality.md)")
    return None


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on a CPU): timings must include it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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

@dataclass
class DistInfo:
    """Where this process stands under torchrun (world 1 without it)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, requested: str) -> torch.device:
        """The device this process trains on: under torchrun "auto" and "cuda" mean this rank's GPU."""
        device = resolve_device(requested if self.world <= 1 or requested != "auto"
                                else ("cuda" if torch.cuda.is_available() else "cpu"))
        return torch.device(f"cuda:{self.local_rank}") if device.type == "cuda" and self.world > 1 else device

    def share(self, fruits: List[str]) -> List[str]:
        """This rank's fruits (every world-th one); a UserError when there are more processes than fruits."""
        mine = list(fruits)[self.rank::self.world]
        if not mine:
            raise UserError(f"rank {self.rank} of {self.world} has no fruit to train; "
                            f"use at most {len(fruits)} processes")
        return mine

    def agree(self, *flags: bool) -> tuple:
        """Under torchrun every rank must write (and gather) together: a flag holds if it holds on any rank."""
        if self.world <= 1:
            return flags
        import torch.distributed as dist

        parts: List[Optional[tuple]] = [None] * self.world
        dist.all_gather_object(parts, tuple(flags))
        return tuple(any(p[i] for p in parts) for i in range(len(flags)))

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    @classmethod
    def from_env(cls) -> "DistInfo":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
