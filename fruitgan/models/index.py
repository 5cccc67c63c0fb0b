"""models/models_index.json: a cache of what describe_model reads from each model folder, rebuilt where stale.
Writers hold a flock on models/.models_index.json.lock around the read-modify-write, so two runs finishing at once
cannot lose each other's entry; the file is replaced atomically."""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import List, Optional

from fruitgan.models.folder import (BEST_DIR, CHECKPOINTS_DIR, INFO_DIR, MODEL_PREFIX, model_folder_name, model_names,
                                   models_root, read_json)
from fruitgan.models.reported import count_or_none, describe_model, reported_figures
from fruitgan.util.safe_files import NAME_PATTERN, atomic_write_json
from fruitgan.util.user_io import UserError

INDEX_FILE = "models_index.json"
INDEX_FORMAT = "fruitgan-models-index/1"
INDEX_LOCK = ".models_index.json.lock"     # hidden: listings skip it; kept (deleting a flock file races)
# The per-fruit figures the index keeps of each fruit's best checkpoint (those present in its record).
INDEX_FIGURES = ("recognizability", "fid", "precision", "recall", "density", "coverage",
                 "two_sample_accuracy", "two_sample_low", "two_sample_high", "memorisation_ratio")


def index_path(workdir: Path) -> Path:
    return models_root(workdir) / INDEX_FILE


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@contextmanager
def _index_locked(workdir: Path):
    """Exclusive flock for one read-modify-write; the kernel drops it when the holder dies (kill -9 too)."""
    fd = os.open(models_root(workdir) / INDEX_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)                  # closing the descriptor releases the lock


def _folder_stamp(path: Path) -> Optional[int]:
    """When the files describing a model last changed (newest mtime, ns), None when the folder is gone. Atomic
    writes change their folder's mtime; the info/ JSON records are added for hand edits in place."""
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
        out[fruit] = {"epoch": q.get("best_epoch") if q.get("best") else count_or_none(rec.get("epoch")), **figures}
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
    doc = read_json(path)
    ours = (doc and doc.get("format") == INDEX_FORMAT and isinstance(doc.get("models"), dict)
            and all(isinstance(e, dict) and NAME_PATTERN.match(str(n)) for n, e in doc["models"].items()))
    return doc if ours else None


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
        atomic_write_json(index_path(workdir), {**doc, "updated": now()})
    except UserError:
        return False
    return True


def update_index(workdir: Path, name: str) -> bool:
    """Re-describe model ``name`` in the index (the trainer calls it with each summary); False when the index
    could not be written (read-only or full models/): it is a cache, which must never stop a training run."""
    if not models_root(workdir).is_dir():
        return False
    try:
        with _index_locked(workdir):
            doc = _load_index(index_path(workdir))
            return _write_index(workdir, _refreshed(workdir, doc, redo=None if doc is None else {name}))
    except OSError:                       # cannot create the lock file: models/ is read-only
        return False


def read_index(workdir: Path, rebuild_if_stale: bool = True) -> dict:
    """{"format", "updated", "models": {name: entry}, "skipped": [{"entry","why"}]}; entries as describe_model's,
    plus "best" {fruit: {"epoch", figures}} and "stamp". rebuild_if_stale: stale, missing and vanished entries are
    redone and written back where models/ is writable; without it, the file as it is (empty when missing)."""
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
