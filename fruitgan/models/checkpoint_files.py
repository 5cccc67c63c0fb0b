"""A model folder's .pt files: the one module that writes them (CheckpointFiles) and reads them back.

* checkpoints/latest.pt: everything a resume needs, as TrainingCheckpoints.snapshot builds it.
* checkpoints/epoch_NNNN.pt, kept every N epochs: only what drawing needs (per fruit the generator that draws,
  its config, the epoch), a quarter of latest.pt's size per fruit. The run's last epoch gets none: its generator
  files hold the same weights, and --checkpoint N reads them; a resume that moves past it writes its epoch file.
* generator_<fruit>.pt, best/generator_<fruit>.pt: gan_model payloads of the generator that draws (the moving
  average when the run kept one, flagged "averaged"); discriminator_<fruit>.pt: the discriminator.
Checkpoints are CPU snapshots written by one background thread, never two at once; network files are written at once."""
from __future__ import annotations

import pickle
import threading
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import torch

from fruitgan.models.folder import CHECKPOINTS_DIR, LATEST_STEM, ModelFolder
from fruitgan.util.safe_files import atomic_torch_save
from fruitgan.util.user_io import UserError

CHECKPOINT_FORMAT = "fruitgan-checkpoint/1"
DRAWING_KEYS = ("ema", "generator")       # a fruit's state that draws: the moving average, else the raw one


def torch_load(path: Path, map_location="cpu"):
    """A weights-only torch file; UserError when it is damaged or would need to run code."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:     # damaged, truncated, or objects (torch's message names internals, many lines)
        runs_code = isinstance(exc, pickle.UnpicklingError) and "unsupported global" in str(exc).lower()
        why = (": it is not a weights-only checkpoint (it would need to run code to load); it was not loaded"
               if runs_code else f" ({type(exc).__name__}); the file is damaged")
        raise UserError(f"cannot read {path}{why}: retrain or use another --checkpoint") from None


def drawing_state(states: dict) -> Tuple[dict, bool]:
    """The generator state that draws of one fruit's networks, and whether it is the moving average."""
    key = next(k for k in DRAWING_KEYS if states.get(k) is not None)
    return states[key], key == "ema"


def for_drawing(ckpt: dict) -> dict:
    """A kept checkpoint: of ``ckpt`` (a full snapshot) only what drawing needs."""
    fruits = {}
    for fruit, states in ckpt["fruits"].items():
        state, averaged = drawing_state(states)
        fruits[fruit] = {"ema" if averaged else "generator": state}
    return {"format": CHECKPOINT_FORMAT, "epoch": ckpt["epoch"], "gan_config": ckpt["gan_config"], "fruits": fruits}


def _epoch_of(payload) -> int:
    epoch = payload.get("epoch") if isinstance(payload, dict) else None
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else -1


class CheckpointFiles:
    """The .pt files of ``folder`` (this process's, under torchrun): writes and reads."""

    def __init__(self, folder: ModelFolder, background: bool = True):
        self.folder, self.background = folder, background
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        self._unkept: Optional[int] = None     # a resumed run's last epoch, kept only by its network files

    def save(self, ckpt: dict, keep: bool) -> None:
        """latest.pt from the snapshot ``ckpt`` and, when ``keep``, its epoch's file for drawing (in the background)."""
        keep = keep and ckpt["epoch"] != self.folder.unkept_last_epoch()
        unkept, self._unkept = self._unkept, None

        def write() -> None:
            latest = self.folder.checkpoint_path(LATEST_STEM)
            if unkept is not None:      # its network files move on from now: keep it from latest.pt, which holds it
                atomic_torch_save(for_drawing(torch_load(latest)), self.folder.checkpoint_path(unkept))
            atomic_torch_save(ckpt, latest)
            if keep:
                atomic_torch_save(for_drawing(ckpt), self.folder.checkpoint_path(ckpt["epoch"]))
        self.submit(write)

    def write_network(self, payload: dict, best: bool = False) -> Path:
        """A gan_model.network_payload (its "kind" and "fruit" name the file), written now."""
        return atomic_torch_save(payload, self.folder.network_path(payload["kind"], payload["fruit"], best))

    def submit(self, write: Callable[[], None]) -> None:
        """Wait for the previous write, then run ``write`` in the background thread (or now, not background)."""
        self.wait()
        if not self.background:
            write()
            return

        def run() -> None:
            try:
                write()
            except BaseException as exc:   # handed to the training thread by wait()
                self._error = exc

        # Not a daemon: the interpreter waits for a write in progress rather than cutting it off.
        self._thread = threading.Thread(target=run, name="checkpoint-writer")
        self._thread.start()

    def wait(self) -> None:
        """Block until the write in progress is on disk; re-raise its error here (once)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def read_resume(self, map_location="cpu") -> dict:
        """This process's latest.pt, to resume from; UserError when missing or damaged."""
        path = self.folder.checkpoint_path(LATEST_STEM)
        if not path.exists():
            raise UserError(f"model {self.folder.name!r} has no checkpoint to resume from ({path.name} missing); "
                            "train it again with --overwrite")
        try:
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:  # a damaged file: say which; kept epochs hold only drawing weights
            raise UserError(f"cannot read checkpoint {path}: {type(exc).__name__}; it cannot be resumed (the kept "
                            f"{CHECKPOINTS_DIR}/epoch_NNNN.pt files hold only what drawing needs): train it again "
                            "with --overwrite") from None
        epoch = _epoch_of(ckpt)
        if epoch == self.folder.unkept_last_epoch() and not self.folder.checkpoint_path(epoch).exists():
            self._unkept = epoch       # save() keeps it before this run writes past it
        return ckpt

    def _checkpoint(self, path: Path, damaged: str) -> dict:
        """A checkpoint file, checked: its format, an int epoch and a dict of states per fruit."""
        payload = torch_load(path)
        fruits = payload.get("fruits") if isinstance(payload, dict) else None
        epoch = payload.get("epoch") if isinstance(fruits, dict) else None
        if (not isinstance(fruits, dict) or payload.get("format") != CHECKPOINT_FORMAT or isinstance(epoch, bool)
                or not isinstance(epoch, int) or not all(isinstance(states, dict) for states in fruits.values())):
            raise UserError(f"{path} is not a training checkpoint ({CHECKPOINT_FORMAT}) or was edited by hand; the "
                            f"model folder is damaged{damaged}")
        return payload

    def latest_holding(self, fruit: str) -> Optional[Tuple[dict, Path]]:
        """The latest checkpoint holding ``fruit`` (the newest epoch when several do), or None when none does."""
        found: Optional[Tuple[dict, Path]] = None
        for path in self.folder.latest_checkpoints():
            payload = self._checkpoint(path, ": use --checkpoint milestone")
            if fruit in (payload.get("fruits") or {}) and (found is None or _epoch_of(payload) > _epoch_of(found[0])):
                found = (payload, path)
        return found

    def kept_holding(self, epoch: int, fruit: str) -> Tuple[dict, Path]:
        """The kept checkpoint of ``epoch`` holding ``fruit`` (under torchrun: whichever rank's file holds it); for
        the run's last epoch, the generator file (a gan_model payload) when it is that epoch's."""
        paths = self.folder.kept_checkpoints().get(epoch)
        if not paths:
            final = self.folder.generator_path(fruit)       # the run's last epoch: its generator file (see save)
            if final.is_file() and _epoch_of(payload := torch_load(final)) == epoch:
                return payload, final
            raise UserError(f"model {self.folder.name!r} kept no checkpoint of epoch {epoch} "
                            f"(checkpoints of {fruit}: {self.folder.checkpoint_options(fruit)})")
        held: List[str] = []
        for path in paths:
            payload = self._checkpoint(path, "")
            fruits = payload.get("fruits") or {}
            if fruit in fruits:
                return payload, path
            held += list(fruits)
        where = paths[0].name if len(paths) == 1 else f"epoch {epoch}"
        raise UserError(f"checkpoint {where} has no {fruit!r} (it has: {', '.join(held) or 'no fruits'})")

