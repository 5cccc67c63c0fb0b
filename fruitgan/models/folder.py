"""The models/ tree: its paths and file names, and one model folder's records (ModelFolder).

    model_<name>/generator_<fruit>.pt, discriminator_<fruit>.pt  the last milestone's networks ("milestone")
    model_<name>/best/generator_<fruit>.pt                        best by quality ("best")
    model_<name>/checkpoints/latest.pt, epoch_NNNN.pt             resume state; kept epochs (checkpoint_files.py)
    model_<name>/generated_epoch_images_<fruit>/epoch_NNNN.png    fixed-noise progress grids
    model_<name>/info/                                            config, summary, histories, cost report
    models_index.json; evaluators/<kind>_version<V>_<R>px.pt      index.py; the metrics' cached classifiers

Readers of the JSON records give None for a missing or damaged file (a listing never fails on one bad file);
every name is checked, so a model folder can never point outside models/."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Union

from fruitgan.util.safe_files import (NAME_PATTERN, atomic_save_image, atomic_write_json, atomic_write_text, check_name,
                                      inside, write_error)
from fruitgan.util.user_io import UserError

MODELS_DIR = "models"
MODEL_PREFIX = "model_"
EVALUATORS_DIR = "evaluators"          # under models/; not a model (no model_ prefix)
EVALUATOR_KINDS = ("classifier", "recognizer")
INFO_DIR, BEST_DIR, CHECKPOINTS_DIR = "info", "best", "checkpoints"
LATEST_STEM = "latest"
GRID_DIR_PREFIX = "generated_epoch_images_"
EPOCH_FILE = re.compile(r"^epoch_(\d+)(?:_rank(\d+)of(\d+))?\.pt$")   # kept checkpoints, one file or one per rank
LATEST_FILE = re.compile(r"^latest(?:_rank(\d+)of(\d+))?\.pt$")     # one file, or one per rank under torchrun
CONFIG_FILE = re.compile(r"^training_config_([A-Za-z0-9_][A-Za-z0-9_-]*)\.json$")
GENERATOR_FILE = re.compile(r"^generator_([A-Za-z0-9_][A-Za-z0-9_-]*)\.pt$")
GRID_FILE = re.compile(r"^epoch_(\d+)\.png$")
NETWORK_KINDS = ("generator", "discriminator")
TRAIN_HINT = "train one with: python train_gan.py --dataset-version 1 --model-name v1"


def models_root(workdir: Path) -> Path:
    return Path(workdir) / MODELS_DIR


def model_folder_name(name: str) -> str:
    """model_<name>: the one place the folder name is built."""
    return f"{MODEL_PREFIX}{name}"


def evaluator_path(workdir: Path, dataset_version: str, resolution: int, kind: str = "classifier") -> Path:
    """kind: "classifier" (the dataset's fruits) or "recognizer" (every fruit of rawData/); the version is checked."""
    if kind not in EVALUATOR_KINDS:
        raise ValueError(f"unknown evaluator kind {kind!r}")
    check_name(dataset_version, "dataset version")
    return inside(models_root(workdir), EVALUATORS_DIR, f"{kind}_version{dataset_version}_{int(resolution)}px.pt")


def epoch_stem(epoch: int) -> str:
    return f"epoch_{epoch:04d}"


def read_json(path: Path) -> Optional[dict]:
    """A JSON object, or None when the file is missing or unreadable (a listing must not fail on one bad file)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class ModelFolder:
    """models/model_<name>/ as process ``rank`` of ``world`` sees it (rank 0 of 1 without torchrun)."""

    def __init__(self, path: Path, name: str, rank: int = 0, world: int = 1):
        self.path = Path(path)
        self.name = check_name(name, "model name")
        self.rank, self.world = rank, world

    @classmethod
    def in_workdir(cls, workdir: Path, name: str, rank: int = 0, world: int = 1) -> "ModelFolder":
        """<workdir>/models/model_<name> (the name is checked; the folder need not exist yet)."""
        check_name(name, "model name")
        return cls(inside(models_root(workdir), model_folder_name(name)), name, rank, world)

    @classmethod
    def at(cls, folder: Path) -> "ModelFolder":
        """An existing model folder anywhere (e.g. a copy in report_assets/), named by its training config."""
        folder = Path(folder)
        info = folder / INFO_DIR
        names = sorted(m.group(1) for p in info.glob("training_config_*.json") if (m := CONFIG_FILE.match(p.name)))
        if len(names) != 1:
            raise UserError(f"{folder} is not a model folder (it needs one info/training_config_<name>.json, "
                            f"found {len(names)}); give models/model_<name>")
        return cls(folder, names[0])

    @property
    def info_dir(self) -> Path:
        return self.path / INFO_DIR

    def exists(self) -> bool:
        """A run saved its settings here (its training config exists). A folder without them holds only what
        a run killed before its first write left: it does not block the name; the next run cleans it up."""
        return self.config_path().exists()

    def config_path(self) -> Path:
        return self.info_dir / f"training_config_{self.name}.json"

    def summary_path(self) -> Path:
        return self.info_dir / f"training_summary_{self.name}.json"

    def history_path(self, fruit: str) -> Path:
        return self.info_dir / f"training_history_{check_name(fruit, 'fruit')}.json"

    def history_plot_path(self, fruit: str) -> Path:
        return self.history_path(fruit).with_suffix(".png")

    def all_histories_plot_path(self) -> Path:
        return self.info_dir / "training_history_all.png"

    def cost_report_path(self) -> Path:
        return self.info_dir / "cost_analysis_report.json"

    def description_path(self) -> Path:
        return self.info_dir / "description.txt"

    def network_path(self, kind: str, fruit: str, best: bool = False) -> Path:
        """<kind>_<fruit>.pt, or best/generator_<fruit>.pt."""
        if kind not in NETWORK_KINDS or (best and kind != "generator"):
            raise ValueError(f"no {'best ' if best else ''}{kind} file in a model folder")
        return self.path / (BEST_DIR if best else "") / f"{kind}_{check_name(fruit, 'fruit')}.pt"

    def generator_path(self, fruit: str, best: bool = False) -> Path:
        return self.network_path("generator", fruit, best)

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    def checkpoint_path(self, which: Union[str, int] = LATEST_STEM) -> Path:
        """This process's checkpoint: latest or kept epoch ``which``; per rank under torchrun."""
        stem = LATEST_STEM if which == LATEST_STEM else epoch_stem(int(which))
        name = f"{stem}.pt" if self.world == 1 else f"{stem}_rank{self.rank}of{self.world}.pt"
        return self.checkpoints_dir / name

    def progress_grid_path(self, fruit: str, epoch: int) -> Path:
        return self.path / f"{GRID_DIR_PREFIX}{check_name(fruit, 'fruit')}" / f"{epoch_stem(epoch)}.png"

    def progress_grids(self) -> Dict[str, List[int]]:
        """{fruit: epochs with a progress grid, sorted} for the generated_epoch_images_<fruit>/ there are."""
        grids = {}
        for folder in sorted(self.path.glob(f"{GRID_DIR_PREFIX}*")):
            fruit = folder.name[len(GRID_DIR_PREFIX):]
            if folder.is_dir() and NAME_PATTERN.match(fruit):          # skip folders a person named oddly
                grids[fruit] = sorted(int(m.group(1)) for p in folder.iterdir() if (m := GRID_FILE.match(p.name)))
        return grids

    def progress_grid_epochs(self) -> List[int]:
        return sorted({e for epochs in self.progress_grids().values() for e in epochs})

    def fruits(self) -> List[str]:
        """The model's fruits: those with a generator file, else those its summary/config name."""
        found = sorted(m.group(1) for p in self.path.glob("generator_*.pt") if (m := GENERATOR_FILE.match(p.name)))
        if found:
            return found
        for record in (self.read_summary(), self.read_config()):
            if record and isinstance(record.get("fruits"), list):
                return [str(f) for f in record["fruits"]]
        return []

    def kept_checkpoints(self) -> Dict[int, List[Path]]:
        """{epoch: its kept checkpoint files}: one epoch_NNNN.pt, or one per rank of a torchrun run."""
        if not self.checkpoints_dir.is_dir():
            return {}
        kept: Dict[int, List[Path]] = {}
        for p in sorted(self.checkpoints_dir.iterdir()):
            if m := EPOCH_FILE.match(p.name):
                kept.setdefault(int(m.group(1)), []).append(p)
        return kept

    def unkept_last_epoch(self) -> Optional[int]:
        """The run's planned last epoch when it is a kept one: it gets no epoch file, because its network files
        hold the same weights (checkpoint_files); None when the saved settings say no such epoch."""
        config = self.read_config() or {}
        last, every = config.get("epochs"), config.get("keep_checkpoint_every")
        if all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (last, every)) and last % every == 0:
            return last
        return None

    def saved_epochs(self) -> List[int]:
        """Epochs --checkpoint N can draw, sorted: those with a kept checkpoint, and the finished run's last."""
        last = self.unkept_last_epoch()
        done = last is not None and (self.read_summary() or {}).get("epochs_done") == last
        return sorted(set(self.kept_checkpoints()) | ({last} if done else set()))

    def latest_checkpoints(self) -> List[Path]:
        """checkpoints/latest.pt, or one latest_rank<r>of<w>.pt per rank."""
        if not self.checkpoints_dir.is_dir():
            return []
        return sorted(p for p in self.checkpoints_dir.iterdir() if LATEST_FILE.match(p.name) and p.is_file())

    def checkpoint_options(self, fruit: str) -> str:
        """What --checkpoint can be for ``fruit``: "latest, milestone, best, 50, 100" (or "none"); "milestone" only
        beside a latest checkpoint (without one, "latest" is the milestone file)."""
        milestone, latest = self.generator_path(fruit).is_file(), bool(self.latest_checkpoints())
        named = {"latest": latest or milestone, "milestone": latest and milestone,
                 "best": self.generator_path(fruit, best=True).is_file()}
        options = [k for k, held in named.items() if held] + [str(e) for e in self.saved_epochs()]
        return ", ".join(options) if options else "none"

    def remove(self) -> None:
        """--overwrite: the whole folder goes; a read-only or full disk is one line naming the folder."""
        if self.path.exists():
            try:
                shutil.rmtree(self.path)
            except OSError as exc:
                raise (write_error(self.path, exc, existed=True) or exc) from None

    def write_config(self, data: dict) -> Path:
        return atomic_write_json(self.config_path(), data)

    def write_summary(self, data: dict) -> Path:
        return atomic_write_json(self.summary_path(), data)

    def write_history(self, fruit: str, data: dict) -> Path:
        return atomic_write_json(self.history_path(fruit), data)

    def write_cost_report(self, report: dict) -> Path:
        return atomic_write_json(self.cost_report_path(), report)

    def write_description(self, text: str) -> Path:
        return atomic_write_text(self.description_path(), text)

    def write_progress_grid(self, image, fruit: str, epoch: int) -> Path:
        return atomic_save_image(image, self.progress_grid_path(fruit, epoch))

    def read_config(self) -> Optional[dict]:
        return read_json(self.config_path())

    def read_summary(self) -> Optional[dict]:
        return read_json(self.summary_path())

    def read_history(self, fruit: str) -> Optional[dict]:
        return read_json(self.history_path(fruit))

    def read_cost_report(self) -> Optional[dict]:
        return read_json(self.cost_report_path())


def model_names(workdir: Path) -> List[str]:
    """Names of the model folders in models/ (model_<name> with a valid name), sorted."""
    root = models_root(workdir)
    if not root.is_dir():
        return []
    names = (p.name[len(MODEL_PREFIX):] for p in root.iterdir() if p.is_dir() and p.name.startswith(MODEL_PREFIX))
    return sorted(n for n in names if NAME_PATTERN.match(n))     # a folder named oddly by hand is not a model


def _there_are(workdir: Path) -> str:
    names = model_names(workdir)
    return (f"models there are: {', '.join(names)}" if names
            else f"there are no models in {models_root(workdir)} yet; {TRAIN_HINT}")


def open_model(workdir: Path, name: str) -> ModelFolder:
    """An existing model's folder; UserError listing the models there are when the name is bad or missing."""
    try:
        folder = ModelFolder.in_workdir(workdir, name)
    except UserError as exc:
        raise UserError(f"{exc}; {_there_are(workdir)}") from None
    if not folder.path.is_dir():
        raise UserError(f"no model {name!r} ({_there_are(workdir)})")
    return folder


def model_dir(workdir: Path, name: str) -> Path:
    return open_model(workdir, name).path
