"""A model's generators, loaded for drawing: which file a --checkpoint names, and the network in it."""
from __future__ import annotations

from pathlib import Path
from typing import Tuple, Union

from gan_model import GANConfig, Generator, network_from_payload
from fruitgan.models.checkpoint_files import CheckpointFiles, torch_load
from fruitgan.models.folder import ModelFolder, open_model
from fruitgan.util.safe_files import check_name
from fruitgan.util.user_io import UserError

NAMED_CHECKPOINTS = ("latest", "milestone", "best")
RAW_WEIGHTS_HINT = "its raw weights are in --checkpoint latest: drop --no-ema or use that"


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
    """A generator file's network: "averaged" files hold only the moving average; older files may hold the
    moving average beside the raw weights (ema_state_dict)."""
    net = network_from_payload(payload, str(path))
    if not isinstance(net, Generator):
        raise UserError(f"{path} holds a {payload.get('kind')}, not a generator; the model folder is damaged")
    if payload.get("averaged"):
        if not use_ema:
            raise UserError(f"{path} keeps only the moving-average generator; {RAW_WEIGHTS_HINT}")
        return net, True
    ema = payload.get("ema_state_dict")
    if use_ema and ema:
        try:
            net.load_state_dict(ema)
        except (RuntimeError, TypeError, AttributeError):
            raise UserError(f"{path}: its moving-average weights do not fit the generator; the file is "
                            "damaged") from None
        return net, True
    return net, False


def _generator_from_checkpoint(payload: dict, path: Path, fruit: str, use_ema: bool) -> Tuple[Generator, bool, int]:
    """``fruit``'s generator in a checkpoint CheckpointFiles read, which checked its format, epoch and states."""
    states = payload["fruits"][fruit]
    used_ema = bool(use_ema and states.get("ema"))
    if not used_ema and states.get("generator") is None and states.get("ema"):
        raise UserError(f"{path} keeps only the moving-average {fruit} generator; {RAW_WEIGHTS_HINT}")
    net = Generator(GANConfig.from_dict(payload.get("gan_config"), str(path)))
    try:
        net.load_state_dict(states["ema"] if used_ema else states["generator"])
    except (KeyError, RuntimeError, TypeError, AttributeError):
        raise UserError(f"{path}: the {fruit} generator weights do not fit its config; the file is damaged") from None
    return net.eval(), used_ema, payload["epoch"]


def read_generator(folder: ModelFolder, fruit: str, best: bool = False, use_ema: bool = True) -> Tuple[Generator, bool]:
    """generator_<fruit>.pt (best/ when ``best``) in eval mode, and whether it holds the moving average."""
    path = folder.generator_path(fruit, best)
    if not path.is_file():
        raise UserError(f"model {folder.name!r} has no {fruit} generator at {path}; train it first")
    net, used_ema = _generator_from_payload(torch_load(path), path, use_ema)
    return net.eval(), used_ema


def load_generator(workdir: Path, name: str, fruit: str, checkpoint: Union[str, int] = "latest", device="cpu",
                   use_ema: bool = True) -> Tuple[Generator, dict]:
    """One fruit's generator of model ``name``, in eval mode on ``device``, and its meta: {"model", "fruit",
    "checkpoint", "epoch", "path", "used_ema", "config", "metrics" (best only), "dataset_version", "resolution"}.
    checkpoint: "latest" (the last finished epoch: the latest checkpoint holding the fruit, else the generator
    file), "milestone" (generator_<fruit>.pt), "best" (best/generator_<fruit>.pt) or a kept epoch's number.
    use_ema: the moving-average weights when the model kept them."""
    folder = open_model(workdir, name)
    fruits = folder.fruits()
    if fruit not in fruits:
        raise UserError(f"model {name!r} has no {fruit!r} generator (fruits there are: {', '.join(fruits) or 'none'})")
    check_name(fruit, "fruit")        # the fruit list may come from a hand-edited JSON file
    try:
        checkpoint = parse_checkpoint(checkpoint)
    except ValueError as exc:
        raise UserError(f"{exc}; checkpoints of {name} {fruit}: {folder.checkpoint_options(fruit)}") from None
    metrics, files = None, CheckpointFiles(folder)
    latest = files.latest_holding(fruit) if checkpoint == "latest" else None
    if isinstance(checkpoint, int) or latest is not None:
        payload, path = latest or files.kept_holding(checkpoint, fruit)   # the last epoch: a generator file
    else:
        path = folder.generator_path(fruit, best=checkpoint == "best")
        if not path.is_file():
            why = " yet (it is written at the first milestone evaluation)" if checkpoint == "best" else ""
            raise UserError(f"model {name!r} has no {checkpoint} {fruit} generator{why} "
                            f"(checkpoints of {fruit}: {folder.checkpoint_options(fruit)})")
        payload = torch_load(path)
    if path.parent == folder.checkpoints_dir:     # not a generator file
        net, used_ema, epoch = _generator_from_checkpoint(payload, path, fruit, use_ema)
    else:
        net, used_ema = _generator_from_payload(payload, path, use_ema)
        epoch, metrics = payload.get("epoch"), payload.get("metrics")
    record = folder.read_summary() or folder.read_config() or {}
    meta = {"model": name, "fruit": fruit, "checkpoint": checkpoint, "epoch": epoch, "path": str(path),
            "used_ema": used_ema, "config": net.config.to_dict(), "metrics": metrics,
            "dataset_version": record.get("dataset_version"), "resolution": net.config.resolution}
    return net.to(device).eval(), meta
