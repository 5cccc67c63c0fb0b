"""The models/ tree: the one module that knows its paths and file names, writes its files and reads them.

    models/model_<name>/generator_<fruit>.pt, discriminator_<fruit>.pt   the last milestone's weights (checkpoint="milestone")
    models/model_<name>/best/generator_<fruit>.pt                         best by quality (checkpoint="best")
    models/model_<name>/checkpoints/latest.pt, epoch_NNNN.pt              everything to resume; kept every N epochs
        (under torchrun each rank writes <stem>_rank<r>of<w>.pt holding only its own fruits); latest.pt holds
        the last finished epoch (checkpoint="latest"; the milestone file when a model has no latest.pt)
    models/models_index.json                                              every model in one file (update_index, read_index)
    models/model_<name>/generated_epoch_images_<fruit>/epoch_NNNN.png     fixed-noise progress grids
    models/model_<name>/info/training_config_<name>.json, training_summary_<name>.json,
        training_history_<fruit>.json, cost_analysis_report.json, description.txt
    models/evaluators/classifier_version<V>_<R>px.pt                      gan_evaluation's cached classifier

ModelFolder is one model's folder as one process sees it (its rank under torchrun): gan_trainer builds the
dicts and hands them to it; generate_images, train_gan and the report read through it. Every file is written
atomically and opened with torch.load(weights_only=True), and every name is checked, so a model folder can
neither run code nor point outside models/. Unknown models, fruits and checkpoints are UserErrors that list
what there is.

models_index.json is a cache of what describe_model reads from each folder: update_index(workdir, name) re-describes
one model (the trainer calls it whenever it writes a summary); read_index(workdir) returns it, first rebuilding the
entries that are missing or stale (their folder changed since) and dropping those whose folder is gone. Writers
take an exclusive flock on models/.models_index.json.lock around the read-modify-write, so two runs finishing at
once cannot lose each other's entry; the file itself is replaced atomically, so readers never see half of it.
"""
from __future__ import annotations

import fcntl
import json
import os
import pickle
import re
import shutil
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch

from gan_model import GANConfig, Generator, network_from_payload
from fruitgan.data.heldout_split import VALIDATION_PREFIX   # the validation part's figures: they chose the best checkpoint
from fruitgan.util.safe_files import NAME_PATTERN, atomic_save_image, atomic_torch_save, atomic_write_json, atomic_write_text, check_name, inside
from fruitgan.util.user_io import UserError

MODELS_DIR = "models"
MODEL_PREFIX = "model_"
EVALUATORS_DIR = "evaluators"          # under models/; not a model (no model_ prefix)
CHECKPOINT_FORMAT = "fruitgan-checkpoint/1"
INFO_DIR, BEST_DIR, CHECKPOINTS_DIR = "info", "best", "checkpoints"
LATEST_STEM = "latest"
GRID_DIR_PREFIX = "generated_epoch_images_"
EPOCH_FILE = re.compile(r"^epoch_(\d+)(?:_rank(\d+)of(\d+))?\.pt$")   # kept checkpoints, one file or one per rank
CONFIG_FILE = re.compile(r"^training_config_([A-Za-z0-9_][A-Za-z0-9_-]*)\.json$")
GENERATOR_FILE = re.compile(r"^generator_([A-Za-z0-9_][A-Za-z0-9_-]*)\.pt$")
GRID_FILE = re.compile(r"^epoch_(\d+)\.png$")
NETWORK_KINDS = ("generator", "discriminator")
NAMED_CHECKPOINTS = ("latest", "milestone", "best")
LATEST_FILE = re.compile(r"^latest(?:_rank(\d+)of(\d+))?\.pt$")     # one file, or one per rank under torchrun
INDEX_FILE = "models_index.json"
INDEX_FORMAT = "fruitgan-models-index/1"
INDEX_LOCK = ".models_index.json.lock"     # hidden: listings skip it; kept (deleting a flock file races)
# The per-fruit figures the index keeps of each fruit's best checkpoint (those present in its record).
INDEX_FIGURES = ("recognizability", "fid", "precision", "recall", "density", "coverage",
                 "two_sample_accuracy", "two_sample_low", "two_sample_high", "memorisation_ratio")
TRAIN_HINT = "train one with: python train_gan.py --dataset-version 1 --model-name v1"


def models_root(workdir: Path) -> Path:
    """<workdir>/models."""
    return Path(workdir) / MODELS_DIR


def model_folder_name(name: str) -> str:
    """model_<name>: the one place the folder name is built."""
    return f"{MODEL_PREFIX}{name}"


EVALUATOR_KINDS = ("classifier", "recognizer")


def evaluator_path(workdir: Path, dataset_version: str, resolution: int, kind: str = "classifier") -> Path:
    """models/evaluators/<kind>_version<V>_<R>px.pt, kind "classifier" (the dataset's fruits) or "recognizer"
    (every fruit of rawData/); the version name is checked: it cannot leave the folder."""
    if kind not in EVALUATOR_KINDS:
        raise ValueError(f"unknown evaluator kind {kind!r}")
    check_name(dataset_version, "dataset version")
    return inside(models_root(workdir), EVALUATORS_DIR, f"{kind}_version{dataset_version}_{int(resolution)}px.pt")


def _epoch_of(payload: dict) -> int:
    epoch = payload.get("epoch")
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else -1


def _epoch_stem(epoch: int) -> str:
    return f"epoch_{epoch:04d}"


def _read_json(path: Path) -> Optional[dict]:
    """A JSON object, or None when the file is missing or unreadable (a listing must not fail on one bad file)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _torch_load(path: Path, map_location="cpu"):
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "unsupported global" not in str(exc).lower():      # not a pickle of objects: garbage
            raise UserError(f"cannot read {path} (UnpicklingError); the file is damaged: retrain or use another "
                            "--checkpoint") from None
        # torch's own message runs over many lines and names internals: say it in one whole sentence instead.
        raise UserError(f"cannot read {path}: it is not a weights-only checkpoint (it would need to run code to "
                        "load); it was not loaded: retrain or use another --checkpoint") from None
    except Exception as exc:     # damaged or truncated
        raise UserError(f"cannot read {path} ({type(exc).__name__}); the file is damaged: retrain or use another "
                        "--checkpoint") from None


class ModelFolder:
    """models/model_<name>/ as process ``rank`` of ``world`` sees it (rank 0 of 1 without torchrun).

    Paths: *_path() methods. Writes (atomic): write_*(). Reads: read_*() (JSON readers give None when a file
    is missing or damaged, so a listing never fails on one bad file).
    """

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

    # ------------------------------------------------------------------ paths
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
        """info/training_history_<fruit>.png (training_plots draws it)."""
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
        stem = LATEST_STEM if which == LATEST_STEM else _epoch_stem(int(which))
        name = f"{stem}.pt" if self.world == 1 else f"{stem}_rank{self.rank}of{self.world}.pt"
        return self.checkpoints_dir / name

    def progress_grid_path(self, fruit: str, epoch: int) -> Path:
        return self.path / f"{GRID_DIR_PREFIX}{check_name(fruit, 'fruit')}" / f"{_epoch_stem(epoch)}.png"

    def progress_grids(self) -> Dict[str, List[int]]:
        """{fruit: epochs with a progress grid, sorted} for the generated_epoch_images_<fruit>/ there are."""
        grids = {}
        for folder in sorted(self.path.glob(f"{GRID_DIR_PREFIX}*")):
            fruit = folder.name[len(GRID_DIR_PREFIX):]
            if folder.is_dir() and NAME_PATTERN.match(fruit):          # skip folders a person named oddly
                grids[fruit] = sorted(int(m.group(1)) for p in folder.iterdir() if (m := GRID_FILE.match(p.name)))
        return grids

    def progress_grid_epochs(self) -> List[int]:
        """Epochs with a progress grid of any fruit, sorted."""
        return sorted({e for epochs in self.progress_grids().values() for e in epochs})

    # ------------------------------------------------------------------ writing
    def remove(self) -> None:
        """Delete the whole folder (asked for with --overwrite: an old model's files must not mix in)."""
        if self.path.exists():
            shutil.rmtree(self.path)

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

    def write_network(self, payload: dict, best: bool = False) -> Path:
        """A gan_model.network_payload (its "kind" and "fruit" name the file)."""
        return atomic_torch_save(payload, self.network_path(payload["kind"], payload["fruit"], best))

    def write_checkpoint(self, ckpt: dict, epoch: int, keep: bool) -> None:
        """The latest checkpoint, and a kept copy of this epoch when ``keep``."""
        atomic_torch_save(ckpt, self.checkpoint_path(LATEST_STEM))
        if keep:
            atomic_torch_save(ckpt, self.checkpoint_path(epoch))

    def write_progress_grid(self, image, fruit: str, epoch: int) -> Path:
        """A PIL image: the fixed-noise grid of ``fruit`` at ``epoch``."""
        return atomic_save_image(image, self.progress_grid_path(fruit, epoch))

    # ------------------------------------------------------------------ reading
    def read_config(self) -> Optional[dict]:
        return _read_json(self.config_path())

    def read_summary(self) -> Optional[dict]:
        return _read_json(self.summary_path())

    def read_history(self, fruit: str) -> Optional[dict]:
        return _read_json(self.history_path(fruit))

    def read_cost_report(self) -> Optional[dict]:
        return _read_json(self.cost_report_path())

    def read_checkpoint(self, which: Union[str, int] = LATEST_STEM, map_location="cpu") -> dict:
        """This process's checkpoint (see checkpoint_path), to resume from; UserError when missing or damaged."""
        path = self.checkpoint_path(which)
        if not path.exists():
            raise UserError(f"model {self.name!r} has no checkpoint to resume from ({path.name} missing); "
                            "train it again with --overwrite")
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:  # a damaged file: say which, keep everything else
            kept = self.checkpoint_path(0).name.replace(_epoch_stem(0), "epoch_NNNN")
            raise UserError(f"cannot read checkpoint {path}: {type(exc).__name__}; "
                            f"restore a kept {CHECKPOINTS_DIR}/{kept} as {path.name}") from None

    def read_generator(self, fruit: str, best: bool = False, use_ema: bool = True) -> Tuple[Generator, bool]:
        """generator_<fruit>.pt (best/ when ``best``) as an eval-mode Generator, and whether it holds the moving
        average (``use_ema`` and the run kept one); UserError when the file is missing or damaged."""
        path = self.generator_path(fruit, best)
        if not path.is_file():
            raise UserError(f"model {self.name!r} has no {fruit} generator at {path}; train it first")
        net, used_ema = _generator_from_payload(_torch_load(path), path, use_ema)
        return net.eval(), used_ema

    def fruits(self) -> List[str]:
        """The model's fruits: those with a generator file, else those its summary/config name."""
        found = sorted(m.group(1) for p in self.path.glob("generator_*.pt") if (m := GENERATOR_FILE.match(p.name)))
        if found:
            return found
        for record in (self.read_summary(), self.read_config()):
            if record and isinstance(record.get("fruits"), list):
                return [str(f) for f in record["fruits"]]
        return []

    def quality(self) -> dict:
        """{fruit: {"latest", "best", "best_epoch", "test", "reference"}}: the summary's quality records (each
        None when missing); reported_figures(entry) gives what a table shows of one."""
        return _quality(self.read_summary())

    def kept_checkpoints(self) -> Dict[int, List[Path]]:
        """{epoch: its kept checkpoint files}: one epoch_NNNN.pt, or one per rank of a torchrun run."""
        if not self.checkpoints_dir.is_dir():
            return {}
        kept: Dict[int, List[Path]] = {}
        for p in sorted(self.checkpoints_dir.iterdir()):
            if m := EPOCH_FILE.match(p.name):
                kept.setdefault(int(m.group(1)), []).append(p)
        return kept

    def saved_epochs(self) -> List[int]:
        """Epochs with a kept checkpoint, sorted."""
        return sorted(self.kept_checkpoints())

    def latest_checkpoints(self) -> List[Path]:
        """checkpoints/latest.pt, or one latest_rank<r>of<w>.pt per rank of a torchrun run."""
        if not self.checkpoints_dir.is_dir():
            return []
        return sorted(p for p in self.checkpoints_dir.iterdir() if LATEST_FILE.match(p.name) and p.is_file())

    def read_latest_checkpoint(self, fruit: str) -> Optional[Tuple[dict, Path]]:
        """The latest checkpoint holding ``fruit`` (the newest epoch when several do), or None when none does."""
        found: Optional[Tuple[dict, Path]] = None
        for path in self.latest_checkpoints():
            payload = _torch_load(path)
            if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
                raise UserError(f"{path} is not a training checkpoint ({CHECKPOINT_FORMAT}); the model folder is "
                                "damaged: use --checkpoint milestone")
            if fruit in (payload.get("fruits") or {}) and (found is None or _epoch_of(payload) > _epoch_of(found[0])):
                found = (payload, path)
        return found

    def checkpoint_options(self, fruit: str) -> str:
        """What --checkpoint can be for ``fruit``: "latest, milestone, best, 50, 100" (or "none").

        "milestone" is named only when a latest checkpoint exists too; without one, "latest" is the milestone file.
        """
        options = []
        milestone = self.generator_path(fruit).is_file()
        latest = bool(self.latest_checkpoints())
        if latest or milestone:
            options.append("latest")
        if latest and milestone:
            options.append("milestone")
        if self.generator_path(fruit, best=True).is_file():
            options.append("best")
        options += [str(e) for e in self.saved_epochs()]
        return ", ".join(options) if options else "none"

    def read_kept_checkpoint(self, epoch: int, fruit: str) -> Tuple[dict, Path]:
        """The kept checkpoint of ``epoch`` holding ``fruit`` (under torchrun: whichever rank's file holds it)."""
        paths = self.kept_checkpoints().get(epoch)
        if not paths:
            raise UserError(f"model {self.name!r} kept no checkpoint of epoch {epoch} "
                            f"(checkpoints of {fruit}: {self.checkpoint_options(fruit)})")
        held: List[str] = []
        for path in paths:
            payload = _torch_load(path)
            if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
                raise UserError(f"{path} is not a training checkpoint ({CHECKPOINT_FORMAT}); the model folder is damaged")
            fruits = payload.get("fruits") or {}
            if fruit in fruits:
                return payload, path
            held += list(fruits)
        where = paths[0].name if len(paths) == 1 else f"epoch {epoch}"
        raise UserError(f"checkpoint {where} has no {fruit!r} (it has: {', '.join(held) or 'no fruits'})")


def model_names(workdir: Path) -> List[str]:
    """Names of the model folders in models/ (model_<name> with a valid name), sorted."""
    root = models_root(workdir)
    if not root.is_dir():
        return []
    names = []
    for path in root.iterdir():
        name = path.name[len(MODEL_PREFIX):]
        if path.is_dir() and path.name.startswith(MODEL_PREFIX):
            try:
                names.append(check_name(name, "model name"))
            except UserError:
                continue               # a folder a person made by hand with an odd name: not a model
    return sorted(names)


def _there_are(workdir: Path) -> str:
    names = model_names(workdir)
    return f"models there are: {', '.join(names)}" if names else f"there are no models in {models_root(workdir)} yet; {TRAIN_HINT}"


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
    """models/model_<name> of an existing model (see open_model)."""
    return open_model(workdir, name).path


# Hand-edited records may hold anything: a listing keeps a field only when it has the type the field means.
def _text(value) -> Optional[str]:
    return value if isinstance(value, str) else None


def _count(value) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _record(value) -> Optional[dict]:
    return value if isinstance(value, dict) else None


def _quality(summary: Optional[dict]) -> dict:
    """{fruit: {"latest": {...}, "best": {...}, "best_epoch": n}} from the summary's per_fruit records."""
    out = {}
    per_fruit = (summary or {}).get("per_fruit")
    if isinstance(per_fruit, dict):
        for fruit, rec in per_fruit.items():
            if isinstance(rec, dict) and NAME_PATTERN.match(str(fruit)):
                out[fruit] = {"latest": _record(rec.get("quality")), "best": _record(rec.get("best_quality")),
                              "best_epoch": _count(rec.get("best_epoch")), "test": _record(rec.get("test_quality")),
                              "reference": _record(rec.get("reference_quality"))}
    return out


HELDOUT_KEYS = ("two_sample", "memorisation")     # figures of the held-out tests (prefixes of their keys)
OLD_RUN_NOTE = ("measured on the drawings that chose this checkpoint (a run from before validation and test "
                "parts): optimistic, not shown; train again for a test-part figure")


def reported_figures(quality: dict) -> dict:
    """A fruit's figures as reported (model table, generate_images.py, the report): the best checkpoint's (the
    latest's when there is none) with the held-out tests measured on the test part, never the validation part's
    figures, which chose that checkpoint. ``quality``: one fruit's entry of describe_model's "quality"."""
    src = quality.get("best") or quality.get("latest") or {}
    rec = {k: v for k, v in src.items() if not k.startswith(VALIDATION_PREFIX)}
    test = quality.get("test") or {}
    if test:
        rec.update({k: v for k, v in test.items() if k.startswith(HELDOUT_KEYS)})
    elif any(k.startswith(VALIDATION_PREFIX) for k in src):
        # No test part yet (no split, or the run has not ended): the validation's note says why, if any.
        rec.update({k[len(VALIDATION_PREFIX):]: v for k, v in src.items()
                    if k.startswith(VALIDATION_PREFIX) and k.endswith("_note")})
    elif isinstance(src.get("two_sample_accuracy"), (int, float)):
        # A run from before the parts existed: its held-out figure chose the checkpoint it describes.
        rec = {k: v for k, v in rec.items() if not k.startswith(HELDOUT_KEYS)}
        rec["two_sample_note"] = OLD_RUN_NOTE
    return rec


def _record_problems(folder: ModelFolder) -> List[str]:
    """Notes on the folder's info/ records that are missing or unreadable (the listing shows them)."""
    problems = []
    for path in (folder.config_path(), folder.summary_path()):
        if not path.exists():
            if path == folder.config_path():
                problems.append(f"{INFO_DIR}/{path.name} is missing")
        elif _read_json(path) is None:
            problems.append(f"{INFO_DIR}/{path.name} is unreadable")
    return problems


def describe_model(workdir: Path, name: str) -> dict:
    """What list_models reports for one model (the fields missing from its records, or of the wrong type, are
    None); "problems" lists its unreadable or missing records."""
    folder = open_model(workdir, name)
    summary = folder.read_summary() or {}
    config = folder.read_config() or {}
    pick = lambda key: summary.get(key, config.get(key))
    version = pick("dataset_version")
    return {
        "name": name,
        "path": str(folder.path),
        "created": _text(pick("created")),
        "updated": _text(summary.get("updated")),
        "dataset_version": str(version) if isinstance(version, (str, int)) and not isinstance(version, bool) else None,
        "resolution": _count(pick("resolution")),
        "fruits": [f for f in folder.fruits() if NAME_PATTERN.match(f)],
        "epochs_done": _count(summary.get("epochs_done")),
        "epochs_planned": _count(summary.get("epochs_planned", config.get("epochs"))),
        "status": _text(summary.get("status")) or ("unknown" if not summary else None),
        "description": _text(config.get("description")),
        "quality": folder.quality(),
        "saved_epochs": folder.saved_epochs(),
        "problems": _record_problems(folder),
    }


def list_models(workdir: Path) -> List[dict]:
    """Every model in models/, sorted by name; see describe_model for the fields."""
    return [describe_model(workdir, name) for name in model_names(workdir)]


# ---------------------------------------------------------------------------------------- models_index.json
def index_path(workdir: Path) -> Path:
    """models/models_index.json."""
    return models_root(workdir) / INDEX_FILE


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@contextmanager
def _index_locked(workdir: Path):
    """Exclusive flock on models/.models_index.json.lock for one read-modify-write of the index (blocking:
    writers hold it for milliseconds). The kernel drops it when the holder dies, kill -9 included."""
    fd = os.open(models_root(workdir) / INDEX_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)                  # closing the descriptor releases the lock


def _folder_stamp(path: Path) -> Optional[int]:
    """When the files describing a model last changed (newest mtime, ns), None when the folder is gone.

    Atomic writes replace files, which changes their folder's mtime, so the folders cover the files in them;
    the info/ JSON records are added for hand edits in place."""
    info = path / INFO_DIR
    watched = [path, info, path / CHECKPOINTS_DIR, path / BEST_DIR]
    if info.is_dir():
        watched += sorted(info.glob("training_*.json"))
    stamps = []
    for p in watched:
        try:
            stamps.append(p.stat().st_mtime_ns)
        except OSError:
            continue                      # not there (yet): nothing to watch
    return max(stamps) if stamps else None


def _best_figures(quality: dict) -> dict:
    """{fruit: {"epoch", INDEX_FIGURES...}}: each fruit's best checkpoint figures (the latest's when no best)."""
    out = {}
    for fruit, q in quality.items():
        rec = reported_figures(q)
        figures = {k: rec[k] for k in INDEX_FIGURES
                   if isinstance(rec.get(k), (int, float)) and not isinstance(rec.get(k), bool)}
        out[fruit] = {"epoch": q.get("best_epoch") if q.get("best") else _count(rec.get("epoch")), **figures}
    return out


def _index_entry(workdir: Path, name: str) -> dict:
    """One model's index entry: describe_model's fields (without the absolute path) plus "best" figures per
    fruit and the folder's "stamp"; a folder that cannot be described is a "damaged" entry saying why."""
    stamp = _folder_stamp(models_root(workdir) / model_folder_name(name))   # before reading: a later change is seen
    try:
        info = describe_model(workdir, name)
    except Exception as exc:  # any one damaged folder must not break the whole listing: it is shown as damaged
        why = str(exc) if isinstance(exc, (UserError, OSError)) else type(exc).__name__
        info = {"name": name, "created": None, "updated": None, "dataset_version": None, "resolution": None,
                "fruits": [], "epochs_done": None, "epochs_planned": None, "status": "damaged",
                "description": None, "quality": {}, "saved_epochs": [], "problems": [f"cannot be read: {why}"]}
    info.pop("path", None)
    return {**info, "best": _best_figures(info["quality"]), "stamp": stamp}


def odd_entries(workdir: Path) -> List[dict]:
    """Entries of models/ named model_* that are not models: [{"entry": name, "why": ...}] (listings note them)."""
    root = models_root(workdir)
    odd = []
    for path in sorted(root.iterdir()) if root.is_dir() else ():
        if not path.name.startswith(MODEL_PREFIX):
            continue                                       # evaluators/, the index, hidden files: not models
        if not path.is_dir():
            odd.append({"entry": path.name, "why": "a file, not a model folder"})
        elif not NAME_PATTERN.match(path.name[len(MODEL_PREFIX):]):
            odd.append({"entry": path.name, "why": "not a valid model name (letters, digits, _ and - only)"})
    return odd


def _load_index(path: Path) -> Optional[dict]:
    """The index document, or None when it is missing, unreadable or not ours."""
    doc = _read_json(path)
    if not doc or doc.get("format") != INDEX_FORMAT or not isinstance(doc.get("models"), dict):
        return None
    if not all(isinstance(e, dict) and NAME_PATTERN.match(str(n)) for n, e in doc["models"].items()):
        return None
    return doc


def _refreshed(workdir: Path, doc: Optional[dict], redo: Optional[set]) -> dict:
    """The index with its model list matching models/: entries in ``redo`` re-described (None: every stale
    one, i.e. whose folder stamp changed), new folders added, vanished ones dropped."""
    old = (doc or {}).get("models", {})
    models = {}
    for name in model_names(workdir):
        entry = old.get(name)
        stale = entry is None or (redo is None and entry.get("stamp") != _folder_stamp(
            models_root(workdir) / model_folder_name(name)))
        models[name] = _index_entry(workdir, name) if stale or (redo and name in redo) else entry
    return {"format": INDEX_FORMAT, "updated": (doc or {}).get("updated"), "models": models,
            "skipped": odd_entries(workdir)}


def _write_index(workdir: Path, doc: dict) -> bool:
    """Write the index atomically; False (and nothing changed) when models/ cannot be written: it is a cache."""
    try:
        atomic_write_json(index_path(workdir), {**doc, "updated": _now()})
    except UserError:
        return False
    return True


def update_index(workdir: Path, name: str) -> bool:
    """Re-describe model ``name`` in models/models_index.json (dropping it when its folder is gone; adding models
    the index lacks), under the index lock so concurrent runs never lose each other's entries.

    Returns False when the index could not be written (read-only or full models/): the index is a cache that
    read_index rebuilds, so that must never stop a training run."""
    if not models_root(workdir).is_dir():
        return False
    try:
        with _index_locked(workdir):
            doc = _load_index(index_path(workdir))
            return _write_index(workdir, _refreshed(workdir, doc, redo=None if doc is None else {name}))
    except OSError:                       # cannot create the lock file: models/ is read-only
        return False


def read_index(workdir: Path, rebuild_if_stale: bool = True) -> dict:
    """models/models_index.json as {"format", "updated", "models": {name: entry}, "skipped": [{"entry","why"}]}.

    rebuild_if_stale: when the file is missing, unreadable, or stale (a model folder changed after its entry,
    or is missing from it, or an entry's folder is gone), rebuild what is stale and write it back (when
    models/ is writable; the rebuilt index is returned either way). Entries: see describe_model, plus "best"
    {fruit: {"epoch", figures}} and "stamp". Without rebuild_if_stale: the file as it is (empty when missing).
    """
    empty = {"format": INDEX_FORMAT, "updated": None, "models": {}, "skipped": []}
    doc = _load_index(index_path(workdir))
    if not rebuild_if_stale or not models_root(workdir).is_dir():
        return doc or empty
    fresh = _refreshed(workdir, doc, redo=None)
    if doc is not None and fresh["models"] == doc["models"] and fresh["skipped"] == doc.get("skipped"):
        return doc
    try:
        with _index_locked(workdir):        # again under the lock: another writer may have updated it meanwhile
            fresh = _refreshed(workdir, _load_index(index_path(workdir)), redo=None)
            _write_index(workdir, fresh)
    except OSError:
        pass                                # read-only models/: list what is there without writing
    return fresh


def parse_checkpoint(value: Union[str, int]) -> Union[str, int]:
    """"latest", "milestone", "best" or an epoch number (int >= 0); ValueError otherwise (argparse-friendly)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"epoch {value} is negative")
        return value
    text = str(value).strip().lower()
    if text in NAMED_CHECKPOINTS:
        return text
    if text.isdigit():
        return int(text)
    raise ValueError(f"checkpoint {value!r} is not 'latest', 'milestone', 'best' or an epoch number")


def _generator_from_payload(payload, path: Path, use_ema: bool) -> Tuple[Generator, bool]:
    net = network_from_payload(payload)
    if not isinstance(net, Generator):
        raise UserError(f"{path} holds a {payload.get('kind')}, not a generator; the model folder is damaged")
    ema = payload.get("ema_state_dict")
    if use_ema and ema:
        try:
            net.load_state_dict(ema)
        except RuntimeError:
            raise UserError(f"{path}: its moving-average weights do not fit the generator; the file is damaged") from None
        return net, True
    return net, False


def _generator_from_checkpoint(payload: dict, path: Path, fruit: str, use_ema: bool) -> Tuple[Generator, bool, int]:
    states = payload["fruits"][fruit]
    used_ema = bool(use_ema and states.get("ema"))
    net = Generator(GANConfig.from_dict(payload.get("gan_config")))
    try:
        net.load_state_dict(states["ema"] if used_ema else states["generator"])
    except (KeyError, RuntimeError):
        raise UserError(f"{path}: the {fruit} generator weights do not fit its config; the file is damaged") from None
    return net.eval(), used_ema, int(payload.get("epoch", -1))


def load_generator(workdir: Path, name: str, fruit: str, checkpoint: Union[str, int] = "latest", device="cpu",
                   use_ema: bool = True) -> Tuple[Generator, dict]:
    """One fruit's generator of model ``name``, in eval mode on ``device``, and what it is.

    checkpoint: "latest" (the last finished epoch: checkpoints/latest.pt, or the latest_rank<r>of<w>.pt holding
    the fruit; generator_<fruit>.pt when the model has no latest checkpoint), "milestone" (generator_<fruit>.pt:
    the last milestone's or the run's end), "best" (best/generator_<fruit>.pt) or an epoch number
    (checkpoints/epoch_NNNN.pt, or the epoch_NNNN_rank<r>of<w>.pt holding the fruit). use_ema: the
    moving-average weights when the model kept them.
    meta: {"model","fruit","checkpoint","epoch","path","used_ema","config","metrics"(best only, else None),
    "dataset_version","resolution"}.
    """
    folder = open_model(workdir, name)
    fruits = folder.fruits()
    if fruit not in fruits:
        raise UserError(f"model {name!r} has no {fruit!r} generator (fruits there are: {', '.join(fruits) or 'none'})")
    check_name(fruit, "fruit")        # the fruit list may come from a hand-edited JSON file
    try:
        checkpoint = parse_checkpoint(checkpoint)
    except ValueError as exc:
        raise UserError(f"{exc}; checkpoints of {name} {fruit}: {folder.checkpoint_options(fruit)}") from None
    metrics = None
    latest = folder.read_latest_checkpoint(fruit) if checkpoint == "latest" else None
    if isinstance(checkpoint, int) or latest is not None:
        payload, path = latest or folder.read_kept_checkpoint(checkpoint, fruit)
        net, used_ema, epoch = _generator_from_checkpoint(payload, path, fruit, use_ema)
    else:
        path = folder.generator_path(fruit, best=checkpoint == "best")
        if not path.is_file():
            why = " yet (it is written at the first milestone evaluation)" if checkpoint == "best" else ""
            raise UserError(f"model {name!r} has no {checkpoint} {fruit} generator{why} "
                            f"(checkpoints of {fruit}: {folder.checkpoint_options(fruit)})")
        payload = _torch_load(path)
        net, used_ema = _generator_from_payload(payload, path, use_ema)
        epoch = payload.get("epoch")
        metrics = payload.get("metrics")
    record = folder.read_summary() or folder.read_config() or {}
    meta = {"model": name, "fruit": fruit, "checkpoint": checkpoint, "epoch": epoch, "path": str(path),
            "used_ema": used_ema, "config": net.config.to_dict(), "metrics": metrics,
            "dataset_version": record.get("dataset_version"), "resolution": net.config.resolution}
    return net.to(device).eval(), meta
