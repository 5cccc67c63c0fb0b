"""Atomic file writes and safe user-supplied names.

Every model, checkpoint, JSON and NPZ the suite writes goes through here: the data is written
to a temporary file in the destination folder and moved into place with ``os.replace``, so a
crash or Ctrl+C at any moment leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

from user_io import UserError

# Names the user gives (dataset versions, model names) become folder and file names:
# letters, digits, '_' and '-' only, so they can never hold '/', '..' or a leading dot.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")

def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()

FRUITS = ("apple", "banana", "blackberry", "grapes", "pear", "strawberry", "watermelon")


def check_name(name: str, what: str) -> str:
    """Return ``name`` if it is a safe folder/file name component, else raise UserError."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise UserError(
            f"invalid {what} {name!r}: use 1-64 letters, digits, '_' or '-' "
            "(no '/', '..', spaces or leading dot)"
        )
    return name


def _atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise UserError(f"cannot write to {path.parent}: {exc.strerror}; choose a writable folder") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)   # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        # Whatever went wrong (disk full, Ctrl+C), the destination keeps its previous content.
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    return _atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(obj: Any, path: Path) -> Path:
    import torch  # imported here so the data-pipeline scripts start without torch

    return _atomic_write(path, lambda fh: torch.save(obj, fh))


def atomic_save_npz(path: Path, **arrays: Any) -> Path:
    import numpy as np

    return _atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays))


def atomic_save_figure(fig: Any, path: Path, **kwargs: Any) -> Path:
    """Save a matplotlib figure as PNG atomically."""
    return _atomic_write(path, lambda fh: fig.savefig(fh, format="png", **kwargs))


def atomic_save_image(image: Any, path: Path) -> Path:
    """Save a PIL image as PNG atomically."""
    return _atomic_write(path, lambda fh: image.save(fh, format="PNG"))


def append_jsonl(path: Path, record: dict) -> None:
    """Append one JSON line (a crash can at worst leave a last partial line, which readers skip)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def inside(base: Path, *parts: str) -> Path:
    """Join ``parts`` under ``base`` and refuse any result that escapes ``base``."""
    base = Path(base).resolve()
    target = base.joinpath(*parts).resolve()
    if target != base and base not in target.parents:
        raise UserError(f"path {'/'.join(parts)!r} escapes {base}; use a plain name")
    return target


def default_workdir() -> Path:
    """The folder holding rawData/ imageData/ npzData/ models/: by default the scripts' folder."""
    return Path(__file__).resolve().parent
