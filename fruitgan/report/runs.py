"""A training run as the report reads it (fruitgan.models.folder), and the commands that reproduce its recipe."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from fruitgan.data import quickdraw_formats as qf
from fruitgan.learn.config import BEFORE_IT_EXISTED, TrainConfig
from fruitgan.models.folder import ModelFolder
from fruitgan.models.loading import read_generator
from fruitgan.util import settings

# Always spelled out: what the reader must see to run it, and the arithmetic used (auto picks per machine).
ALWAYS_SHOWN = ("dataset_version", "model_name", "epochs", "batch_size", "lr", "seed", "precision")
# Settings that cannot change what a run learns: not part of its recipe.
NOT_RECIPE = ("description", "device", "stop_after_epochs", "fruits")
# Saved by every run since the trainer was rewritten: a run without it was trained by the earlier code.
REWRITE_MARK = "steps_per_epoch"


@dataclass
class Run:
    """One model folder's records: settings, summary and each fruit's history."""

    folder: ModelFolder
    config: dict
    summary: dict
    histories: Dict[str, dict]

    @classmethod
    def open(cls, path) -> Optional["Run"]:
        """The run at ``path``, or None when there is no model folder there."""
        if not Path(path).is_dir():
            return None
        folder = ModelFolder.at(Path(path))
        config, summary = folder.read_config(), folder.read_summary() or {}
        fruits = summary.get("fruits") or config["fruits"]
        return cls(folder, config, summary, {f: folder.read_history(f) or {} for f in fruits})

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def fruits(self) -> List[str]:
        return list(self.histories)

    @property
    def resolution(self) -> int:
        return self.config["resolution"]

    def dataset(self, key: str) -> dict:
        """One of the dataset's per-fruit records ("images", "real_images", "augmentation", "quality")."""
        return (self.config.get("dataset") or {}).get(key) or {}

    def gan_config(self):
        """The networks and training recipe the run used (a setting saved before it existed: as it was then)."""
        return TrainConfig.from_saved(self.config, "the run's saved settings").gan_config(self.resolution)

    def trained_generator(self):
        """The first fruit's final generator (its moving average where saved), or None without weights."""
        if not self.fruits or not self.folder.generator_path(self.fruits[0]).is_file():
            return None
        return read_generator(self.folder, self.fruits[0])[0]

    def split_fruits(self) -> List[str]:
        return [f for f, h in self.histories.items() if h.get("num_heldout_real_images")]


def _flag_text(setting: settings.Setting, value) -> str:
    if setting.kind is bool:
        return setting.flag                     # a switch: given means "not the default"
    shown = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
    return f"{setting.flag} {shown}"


def _differs(value, default) -> bool:
    as_list = (lambda v: list(v) if isinstance(v, (list, tuple)) else v)
    return as_list(value) != as_list(default)


def train_command(config: dict) -> str:
    """train_gan.py with the run's recipe: every setting that differs from today's default, the basics always.
    A setting saved before it existed reads as what the code did then (learn.config.BEFORE_IT_EXISTED)."""
    cfg = TrainConfig.from_saved(config, "the run's saved settings")
    flags = []
    for s in settings.TRAIN_SETTINGS:
        value = getattr(cfg, s.field)
        if s.flag and s.field not in NOT_RECIPE and (s.field in ALWAYS_SHOWN or _differs(value, s.default)):
            flags.append(_flag_text(s, value))
    if list(cfg.fruits) != list((config.get("dataset") or {}).get("fruits", cfg.fruits)):
        flags.append(_flag_text(settings.FRUIT_LIST, cfg.fruits))     # a subset of the dataset's fruits
    return "python train_gan.py --yes " + " ".join(flags)


def dataset_command(config: dict) -> str:
    """rawDataToImage.py with the flags that made the run's dataset version."""
    ds = config.get("dataset") or {}
    augment = [a for a in (ds.get("augmentation") or {}).values() if a]
    flags = [f"--version {config['dataset_version']}", f"--resolution {config['resolution']}",
             f"--fruits {','.join(config['fruits'])}"]
    if ds.get("images"):
        flags.append(f"--count {max(ds['images'].values())}")
    if augment:
        flags.append("--augment" if any(a.get("enabled") for a in augment) else "--no-augment")
    seeds = {(a.get("settings") or {}).get("seed") for a in augment}
    if len(seeds) == 1 and None not in seeds:
        flags.append(f"--seed {seeds.pop()}")
    presets = set((ds.get("quality") or {qf.DEFAULT_QUALITY: qf.DEFAULT_QUALITY}).values())
    if len(presets) == 1:
        flags.append(f"--quality {presets.pop()}")
    return "python rawDataToImage.py --yes " + " ".join(flags)


def commands(config: dict) -> List[str]:
    """The three commands that make the run: its dataset, the NPZ files, the training."""
    return [dataset_command(config), f"python imageToNPZ.py --yes --version {config['dataset_version']}",
            train_command(config)]


def recipe_notes(config: dict) -> List[str]:
    """What the commands cannot say about the run's recipe: settings it predates, code that changed since."""
    notes = []
    defaults = {s.field: s.default for s in settings.TRAIN_SETTINGS}
    older = [k for k in BEFORE_IT_EXISTED if k not in config and BEFORE_IT_EXISTED[k] != defaults[k]]
    if older:
        then = ", ".join(f"{k} {BEFORE_IT_EXISTED[k]}" for k in older)
        notes.append(f"The run was saved before these settings existed: {then}. That is how it trained, and the "
                     "command above spells it out, so today's defaults do not replace it.")
    if REWRITE_MARK not in config:
        notes.append("It was trained by the code before the trainer was rewritten. The recipe above is the same "
                     "(networks, losses, optimizers, moving average, batch, epochs), but the pixels will not be: "
                     "strokes are now rendered in the geometry of Google's bitmaps, and each fruit's random "
                     "numbers are drawn in another order. A rerun trains the same recipe, not the same weights.")
    if not (config.get("dataset") or {}).get("quality"):
        notes.append(f"Its dataset did not record the drawing filter; it used the default, `{qf.DEFAULT_QUALITY}`.")
    return notes


def number(v) -> bool:
    """A measured figure: a real number, not a flag, not NaN."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)


def fmt(v, spec: str) -> str:
    """A figure, or "-" where it was not measured."""
    return format(v, spec) if number(v) else "-"


def span(values, spec: str) -> str:
    """'0.16-0.26': the range of the measured values."""
    vals = [v for v in values if number(v)]
    if not vals:
        return "not measured"
    lo, hi = format(min(vals), spec), format(max(vals), spec)
    return lo if lo == hi else f"{lo}-{hi}"
