"""The record of finished spot-the-fake sessions, models/model_<name>/info/human_test_<fruit>.jsonl: written
and read here only, one JSON line per finished session, appended under the file's lock and atomically."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import List, Optional

import numpy as np

from fruitgan.models.folder import INFO_DIR
from fruitgan.people.session import ANSWERS, score
from fruitgan.util.run_lock import RunLock
from fruitgan.util.safe_files import atomic_write_bytes, checked_size
from fruitgan.util.user_io import UserError

FORMAT = "fruitgan-human-test/1"
MAX_FILE_BYTES = 64 * 2**20         # thousands of sessions of 200 drawings: more is not one of ours
LOCK_TRIES, LOCK_WAIT_S = 100, 0.1  # another session appending holds the lock for milliseconds
BOOTSTRAP_DRAWS = 2000
BOOTSTRAP_SEED = 0                  # the same sessions always give the same interval
INTERVAL_TAILS = (0.025, 0.975)     # 95%, two-sided


def human_test_path(model_dir: Path, fruit: str) -> Path:
    return Path(model_dir) / INFO_DIR / f"human_test_{fruit}.jsonl"


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        return b""
    checked_size(path.stat().st_size, "file size", 0, MAX_FILE_BYTES, path)
    return path.read_bytes()


def append_session(model_dir: Path, fruit: str, record: dict) -> Path:
    """Add one finished session as a line of the fruit's record (atomically, one writer at a time)."""
    path = human_test_path(model_dir, fruit)
    line = json.dumps({"format": FORMAT, **record}, separators=(",", ":")).encode("utf-8") + b"\n"
    for attempt in range(LOCK_TRIES):
        try:
            lock = RunLock(path, what=f"the spot-the-fake record {path.name}").acquire()
            break
        except UserError:
            if attempt == LOCK_TRIES - 1:
                raise
            time.sleep(LOCK_WAIT_S)
    try:
        before = _read_bytes(path)
        if before and not before.endswith(b"\n"):
            before += b"\n"             # a hand edit lost the last newline: keep its line whole
        return atomic_write_bytes(path, before + line)
    finally:
        lock.release()


def _whole(record: object) -> bool:
    """A finished session of this format: every scored image has a truth and an answer."""
    images = record.get("images") if isinstance(record, dict) else None
    return (record.get("format") == FORMAT and isinstance(images, list) and len(images) > 0
            and all(isinstance(i, dict) and i.get("truth") in ANSWERS and i.get("answer") in ANSWERS for i in images))


def read_sessions(model_dir: Path, fruit: str) -> List[dict]:
    """The fruit's finished sessions, oldest first; damaged lines are skipped."""
    sessions = []
    for line in _read_bytes(human_test_path(model_dir, fruit)).splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if _whole(record):
            sessions.append(record)
    return sessions


def pooled_human_figure(model_dir: Path, fruit: str) -> Optional[dict]:
    """Share judged right over every kept session of the fruit (None: none yet), with its 95% interval:
    Wilson's for one session, else bootstrapped over sessions (a person's answers are not independent draws)."""
    scores = [score([(i["truth"], i["answer"]) for i in r["images"]]) for r in read_sessions(model_dir, fruit)]
    if not scores:
        return None
    right = np.array([s["right"] for s in scores])
    judged = np.array([s["judged"] for s in scores])
    if len(scores) == 1:
        low, high = scores[0]["low"], scores[0]["high"]
    else:
        picks = np.random.default_rng(BOOTSTRAP_SEED).integers(0, len(scores), (BOOTSTRAP_DRAWS, len(scores)))
        low, high = np.quantile(right[picks].sum(axis=1) / judged[picks].sum(axis=1), INTERVAL_TAILS)
    return {"sessions": len(scores), "judged": int(judged.sum()), "accuracy": float(right.sum() / judged.sum()),
            "low": float(low), "high": float(high)}
