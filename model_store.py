"""Reading the models/ tree that gan_trainer.py writes: which models there are, and their generators.

    models/model_<name>/generator_<fruit>.pt            latest weights      (checkpoint="latest")
    models/model_<name>/best/generator_<fruit>.pt       best by quality     (checkpoint="best")
    models/model_<name>/checkpoints/epoch_NNNN.pt       kept every N epochs (checkpoint=N)
    models/model_<name>/info/training_config_<name>.json, training_summary_<name>.json

Every file is opened with torch.load(weights_only=True), and every name the user gives is checked, so a
model folder can neither run code nor point outside models/. Unknown models, fruits and checkpoints are
UserErrors that list what there is.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import List, Optional, Tuple, Union

import torch

from gan_model import GANConfig, Generator, network_from_payload
from safe_files import check_name, inside
from user_io import UserError

MODELS_DIR = "models"
MODEL_PREFIX = "model_"
CHECKPOINT_FORMAT = "fruitgan-checkpoint/1"
EPOCH_FILE = re.compile(r"^epoch_(\d+)\.pt$")
GENERATOR_FILE = re.compile(r"^generator_([A-Za-z0-9_][A-Za-z0-9_-]*)\.pt$")
NAMED_CHECKPOINTS = ("latest", "best")
TRAIN_HINT = "train one with: python train_gan.py --dataset-version 1 --model-name v1"


def models_root(workdir: Path) -> Path:
    """<workdir>/models."""
    return Path(workdir) / MODELS_DIR


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


def model_dir(workdir: Path, name: str, must_exist: bool = True) -> Path:
    """models/model_<name> (the name is checked); UserError listing the models there are when missing."""
    try:
        check_name(name, "model name")
    except UserError as exc:
        raise UserError(f"{exc}; {_there_are(workdir)}") from None
    path = inside(models_root(workdir), f"{MODEL_PREFIX}{name}")
    if must_exist and not path.is_dir():
        raise UserError(f"no model {name!r} ({_there_are(workdir)})")
    return path


def _read_json(path: Path) -> Optional[dict]:
    """A JSON object, or None when the file is missing or unreadable (a listing must not fail on one bad file)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_summary(folder: Path, name: str) -> Optional[dict]:
    return _read_json(folder / "info" / f"training_summary_{name}.json")


def read_config(folder: Path, name: str) -> Optional[dict]:
    return _read_json(folder / "info" / f"training_config_{name}.json")


def model_fruits(folder: Path, name: str) -> List[str]:
    """The model's fruits: those with a generator file, else those its summary/config name."""
    found = sorted(m.group(1) for p in folder.glob("generator_*.pt") if (m := GENERATOR_FILE.match(p.name)))
    if found:
        return found
    for record in (read_summary(folder, name), read_config(folder, name)):
        if record and isinstance(record.get("fruits"), list):
            return [str(f) for f in record["fruits"]]
    return []


def saved_epochs(folder: Path) -> List[int]:
    """Epochs with a kept checkpoint (checkpoints/epoch_NNNN.pt), sorted."""
    ckpt = folder / "checkpoints"
    if not ckpt.is_dir():
        return []
    return sorted(int(m.group(1)) for p in ckpt.iterdir() if (m := EPOCH_FILE.match(p.name)))


def _quality(summary: Optional[dict]) -> dict:
    """{fruit: {"latest": {...}, "best": {...}, "best_epoch": n}} from the summary's per_fruit records."""
    out = {}
    per_fruit = (summary or {}).get("per_fruit")
    if isinstance(per_fruit, dict):
        for fruit, rec in per_fruit.items():
            if isinstance(rec, dict):
                out[fruit] = {"latest": rec.get("quality"), "best": rec.get("best_quality"),
                              "best_epoch": rec.get("best_epoch"), "reference": rec.get("reference_quality")}
    return out


def describe_model(workdir: Path, name: str) -> dict:
    """What list_models reports for one model (the fields missing from its records are None)."""
    folder = model_dir(workdir, name)
    summary = read_summary(folder, name) or {}
    config = read_config(folder, name) or {}
    pick = lambda key: summary.get(key, config.get(key))
    return {
        "name": name,
        "path": str(folder),
        "created": pick("created"),
        "updated": summary.get("updated"),
        "dataset_version": pick("dataset_version"),
        "resolution": pick("resolution"),
        "fruits": model_fruits(folder, name),
        "epochs_done": summary.get("epochs_done"),
        "epochs_planned": summary.get("epochs_planned", config.get("epochs")),
        "status": summary.get("status") or ("unknown" if not summary else None),
        "description": config.get("description"),
        "quality": _quality(summary),
        "saved_epochs": saved_epochs(folder),
    }


def list_models(workdir: Path) -> List[dict]:
    """Every model in models/, sorted by name; see describe_model for the fields."""
    return [describe_model(workdir, name) for name in model_names(workdir)]


def parse_checkpoint(value: Union[str, int]) -> Union[str, int]:
    """"latest", "best" or an epoch number (int >= 0); ValueError otherwise (argparse-friendly)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"epoch {value} is negative")
        return value
    text = str(value).strip().lower()
    if text in NAMED_CHECKPOINTS:
        return text
    if text.isdigit():
        return int(text)
    raise ValueError(f"checkpoint {value!r} is not 'latest', 'best' or an epoch number")


def _torch_load(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:     # damaged, truncated, or not a weights-only file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise UserError(f"cannot read {path} ({first}); the file is damaged: retrain or use another "
                        "--checkpoint") from None


def _checkpoint_list(folder: Path, fruit: str) -> str:
    options = []
    if (folder / f"generator_{fruit}.pt").is_file():
        options.append("latest")
    if (folder / "best" / f"generator_{fruit}.pt").is_file():
        options.append("best")
    options += [str(e) for e in saved_epochs(folder)]
    return ", ".join(options) if options else "none"


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


def _generator_from_checkpoint(payload, path: Path, fruit: str, use_ema: bool) -> Tuple[Generator, bool, int]:
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a training checkpoint ({CHECKPOINT_FORMAT}); the model folder is damaged")
    fruits = payload.get("fruits") or {}
    if fruit not in fruits:
        raise UserError(f"checkpoint {path.name} has no {fruit!r} (it has: {', '.join(fruits) or 'no fruits'})")
    states = fruits[fruit]
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

    checkpoint: "latest" (generator_<fruit>.pt), "best" (best/generator_<fruit>.pt) or an epoch number
    (checkpoints/epoch_NNNN.pt). use_ema: the moving-average weights when the model kept them.
    meta: {"model","fruit","checkpoint","epoch","path","used_ema","config","metrics"(best only, else None),
    "dataset_version","resolution"}.
    """
    folder = model_dir(workdir, name)
    fruits = model_fruits(folder, name)
    if fruit not in fruits:
        raise UserError(f"model {name!r} has no {fruit!r} generator (fruits there are: {', '.join(fruits) or 'none'})")
    check_name(fruit, "fruit")        # the fruit list may come from a hand-edited JSON file
    try:
        checkpoint = parse_checkpoint(checkpoint)
    except ValueError as exc:
        raise UserError(f"{exc}; checkpoints of {name} {fruit}: {_checkpoint_list(folder, fruit)}") from None
    metrics = None
    if isinstance(checkpoint, int):
        path = folder / "checkpoints" / f"epoch_{checkpoint:04d}.pt"
        if not path.is_file():
            raise UserError(f"model {name!r} kept no checkpoint of epoch {checkpoint} "
                            f"(checkpoints of {fruit}: {_checkpoint_list(folder, fruit)})")
        net, used_ema, epoch = _generator_from_checkpoint(_torch_load(path), path, fruit, use_ema)
    else:
        path = folder / ("best" if checkpoint == "best" else "") / f"generator_{fruit}.pt"
        if not path.is_file():
            why = " yet (it is written at the first milestone evaluation)" if checkpoint == "best" else ""
            raise UserError(f"model {name!r} has no {checkpoint} {fruit} generator{why} "
                            f"(checkpoints of {fruit}: {_checkpoint_list(folder, fruit)})")
        payload = _torch_load(path)
        net, used_ema = _generator_from_payload(payload, path, use_ema)
        epoch = payload.get("epoch")
        metrics = payload.get("metrics")
    record = read_summary(folder, name) or read_config(folder, name) or {}
    meta = {"model": name, "fruit": fruit, "checkpoint": checkpoint, "epoch": epoch, "path": str(path),
            "used_ema": used_ema, "config": net.config.to_dict(), "metrics": metrics,
            "dataset_version": record.get("dataset_version"), "resolution": net.config.resolution}
    return net.to(device).eval(), meta
