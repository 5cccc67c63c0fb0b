"""One writer per folder: an exclusive, crash-safe lock for a model folder or a dataset version.

    with RunLock(folder, what="model v1", advice="choose another name") as lock:
        if lock.previous is not None:   # a run that died (kill -9) held it before us: clean its leftovers
            ...

A second writer gets a one-line UserError: "model v1 is being written by PID 1234 on host h since 12:03; ...".
``left_unfinished`` / ``unfinished_until_done`` record which outputs a run that never finished left, so
the next run replaces them instead of refusing them as "already exists".

Why it is safe:
* ``fcntl.flock``: the kernel releases it when the holder exits in any way (kill -9 included), so no
  "is that PID alive?" guess is needed; the PID, host and time in the file only serve the message.
* The lock file is a hidden SIBLING ``<parent>/.<name>.lock``: one inside would be deleted with the folder
  (--overwrite, a published partial folder) while still held.
* Release deletes the file while still holding it; a taker that locked a deleted file notices and retries.
* The descriptor is close-on-exec and closed in forked children: an orphaned worker cannot keep the lock.
* Taking a lock this process already holds is refused (it would deadlock or double-write)."""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

from fruitgan.util.safe_files import atomic_write_json, not_regular, process_alive, read_regular
from fruitgan.util.user_io import UserError

LOCK_SUFFIX = ".lock"
DEFAULT_ADVICE = "wait for it to finish or choose another name"
# A taker retries only when a holder released between its open() and flock(): a bound never reached in practice.
MAX_TAKE_ATTEMPTS = 50
# Lock files are tiny JSON records; reading more than this means it is not one of ours.
MAX_RECORD_BYTES = 4096

# Locks held by this process, by lock file path (for fork children and second takes); guarded by _HELD_GUARD.
_HELD: Dict[str, "RunLock"] = {}
_HELD_GUARD = threading.Lock()


@dataclass(frozen=True)
class Holder:
    """Who wrote a lock file (as recorded in it; any field may be missing in a damaged file)."""

    pid: Optional[int]
    host: Optional[str]
    started: Optional[float]  # time.time() when the lock was taken

    def describe(self) -> str:
        """'PID 1234 on host h since 12:03' (parts that are unknown are left out)."""
        parts = [f"PID {self.pid}" if self.pid is not None else "another process"]
        if self.host:
            parts.append(f"on host {self.host}")
        if self.started is not None:
            parts.append(f"since {_clock(self.started)}")
        return " ".join(parts)


def _clock(stamp: float) -> str:
    when = datetime.fromtimestamp(stamp)
    return when.strftime("%H:%M") if when.date() == datetime.now().date() else when.strftime("%Y-%m-%d %H:%M")


def lock_path(folder: Path) -> Path:
    """The lock file of ``folder``: ``<parent>/.<name>.lock`` (a sibling, see the module docstring)."""
    # resolve(): two writers naming one folder through different links must meet at one lock file
    folder = Path(folder).resolve()
    return folder.with_name(f".{folder.name}{LOCK_SUFFIX}")


def _read_record(fd: int) -> Optional[Holder]:
    try:
        raw = os.pread(fd, MAX_RECORD_BYTES, 0)
    except OSError:
        return None
    if not raw.strip():
        return None  # the holder has the lock but has not written its record yet
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        doc = None
    if not isinstance(doc, dict):
        return Holder(None, None, None)
    pid, host, started = doc.get("pid"), doc.get("host"), doc.get("started")
    number = isinstance(started, (int, float)) and not isinstance(started, bool)
    return Holder(pid=pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None,
                  host=host if isinstance(host, str) and host else None, started=float(started) if number else None)


class RunLock:
    """Exclusive lock on ``folder`` for one writing process; see the module docstring."""

    def __init__(self, folder: Path, what: str, advice: str = DEFAULT_ADVICE):
        self.folder = Path(folder)
        self.what = what
        self.advice = advice
        self.path = lock_path(self.folder)
        self.previous: Optional[Holder] = None  # set by acquire() when it took over a dead run's lock
        self._fd: Optional[int] = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()

    def acquire(self) -> "RunLock":
        """Take the lock or raise UserError naming the holder. Returns self."""
        with _HELD_GUARD:
            if str(self.path) in _HELD:
                raise UserError(f"{self.what} is already being written by this process (PID {os.getpid()}); "
                                f"{self.advice}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create {self.path.parent} for {self.what}: {exc.strerror or exc}; "
                            "choose a writable folder") from None
        for _ in range(MAX_TAKE_ATTEMPTS):
            fd = self._open()
            if self._try_flock(fd) and self._still_named(fd):
                self._claim(fd)
                return self
            os.close(fd)
        raise UserError(f"could not take the lock {self.path} for {self.what} (it keeps changing hands); run again")

    def _open(self) -> int:
        try:
            # os.open's descriptors are close-on-exec; O_NONBLOCK: a FIFO there is refused, not waited on.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_NOCTTY, 0o666)
        except OSError as exc:
            kind = not_regular(self.path)
            if kind not in (None, "missing") and not kind.startswith("unreadable"):
                raise UserError(_special(self.path, kind)) from None
            raise UserError(f"cannot create the lock file {self.path} for {self.what}: {exc.strerror or exc}; "
                            "choose a writable folder") from None
        _refuse_special(fd, self.path)
        return fd

    def _try_flock(self, fd: int) -> bool:
        """True when locked; UserError naming the holder when another process has it."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            holder = _read_record(fd)
            os.close(fd)
            raise UserError(self._refusal(holder)) from None
        except OSError as exc:
            os.close(fd)
            raise UserError(f"cannot lock {self.path} for {self.what}: {exc.strerror or exc} "
                            "(the file system may not support locks); choose a local folder") from None

    def _still_named(self, fd: int) -> bool:
        """False when a releasing holder deleted the file we locked (then its name is free again)."""
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (named.st_dev, named.st_ino) == (mine.st_dev, mine.st_ino)

    def _claim(self, fd: int) -> None:
        self.previous = _read_record(fd)  # an unlocked record is a run that ended without releasing
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                             "what": self.what}).encode("utf-8")
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, record + b"\n", 0)
        except OSError as exc:
            # The lock itself holds; only the message for a second writer would lack details.
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                os.close(fd)
                raise UserError(f"cannot write the lock file {self.path}: {exc.strerror or exc}") from None
        self._fd = fd
        with _HELD_GUARD:
            _HELD[str(self.path)] = self

    def _refusal(self, holder: Optional[Holder]) -> str:
        # No record yet, or still a dead run's: the new holder has not written its own (a flock never
        # outlives its process, so the holder is not the dead one).
        if holder is None or (holder.pid is not None and holder.host == socket.gethostname()
                              and not process_alive(holder.pid)):
            return f"{self.what} is being written by another process (just started); {self.advice}"
        return f"{self.what} is being written by {holder.describe()}; {self.advice}"

    def release(self) -> None:
        """Give the lock up and delete its file (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with _HELD_GUARD:
            _HELD.pop(str(self.path), None)
        # Delete while still holding: a taker that opened the old file sees it unnamed and retries. A lock file
        # left behind is harmless: the next taker locks and reuses it.
        with suppress(OSError):
            if self._still_named(fd):
                os.unlink(self.path)
        os.close(fd)  # releases the flock


def _special(path: Path, kind: str) -> str:
    return (f"the lock file {path} is {kind}, not a regular file; "
            "remove it (it only marks a running writer) and run again")


def _refuse_special(fd: int, path: Path) -> None:
    """UserError (closing ``fd``) when the lock file opened as ``fd`` is a FIFO, folder, socket or device."""
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise UserError(_special(path, not_regular(path) or "a special file"))


def current_holder(folder: Path) -> Optional[Holder]:
    """Who holds ``folder``'s lock now, or None. Never creates the file; its instant shared lock may make
    a writer starting in that very instant see it busy, so never call it in a loop."""
    path = lock_path(folder)
    with _HELD_GUARD:
        if str(path) in _HELD:
            return Holder(os.getpid(), socket.gethostname(), None)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)   # never waits on a FIFO
    except OSError:
        return None
    _refuse_special(fd, path)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_record(fd) or Holder(None, None, None)
    except OSError:
        pass
    finally:
        os.close(fd)   # after reading the record; it lets our shared lock go
    return None  # we got the lock (or locks do not work here), so nobody writes


def refuse_if_held(folder: Path, what: str, advice: str = DEFAULT_ADVICE) -> None:
    """Raise the refusal a second writer gets, early (before prompts); the RunLock still guarantees one writer."""
    holder = current_holder(folder)
    if holder is not None and holder.pid != os.getpid():
        raise UserError(RunLock(folder, what, advice)._refusal(holder))


def _close_in_child() -> None:
    global _HELD_GUARD
    _HELD_GUARD = threading.Lock()  # another thread may have held it at the fork
    # Close the child's copies of the lock files (never LOCK_UN: that would release the parent's lock).
    for lock in list(_HELD.values()):
        if lock._fd is not None:
            with suppress(OSError):
                os.close(lock._fd)
            lock._fd = None
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)


# ----------------------------------------------------------------------------- unfinished runs
UNFINISHED_SUFFIX = ".unfinished"
UNFINISHED_FIX = "remove it (it only lists a stopped run's outputs) and run again"


def unfinished_path(folder: Path) -> Path:
    """``<parent>/.<name>.unfinished``: the outputs a run of ``folder`` creates, until it finishes."""
    path = lock_path(folder)
    return path.with_name(path.name[:-len(LOCK_SUFFIX)] + UNFINISHED_SUFFIX)


def left_unfinished(folder: Path) -> List[str]:
    """The outputs (e.g. fruits) a stopped run of ``folder`` was creating: the next run replaces them without
    --overwrite. Read it holding ``folder``'s RunLock (no live run owns it then); a damaged record names none."""
    path = unfinished_path(folder)
    if not os.path.lexists(path):
        return []
    try:
        doc = json.loads(read_regular(path, UNFINISHED_FIX, limit=MAX_RECORD_BYTES * 16).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return []
    outputs = doc.get("outputs") if isinstance(doc, dict) else None
    return [o for o in outputs if isinstance(o, str)] if isinstance(outputs, list) else []


def _record(folder: Path, outputs: Sequence[str], best_effort: bool = False, start: bool = False) -> None:
    """Write the record of ``outputs`` (always at the ``start``), or remove it when there are none.
    ``best_effort``: a failed run's own error must not be masked by one of the record's."""
    path = unfinished_path(folder)
    try:
        if outputs or start:
            atomic_write_json(path, {"outputs": list(outputs), "pid": os.getpid(), "host": socket.gethostname()})
        elif os.path.lexists(path):
            os.unlink(path)
    except (OSError, UserError):
        if not best_effort:
            raise


@contextmanager
def unfinished_until_done(folder: Path, creates: Sequence[str], writes: Sequence[str]) -> Iterator[List[str]]:
    """Hold ``folder``'s RunLock around this block. Until it ends, the outputs it ``creates`` are recorded as
    unfinished (beside an earlier stopped run's not in ``writes``). Append each output to the yielded list once
    complete: if the block fails, those it created stay recorded for the next run to replace."""
    kept = [o for o in left_unfinished(folder) if o not in writes]
    _record(folder, [*kept, *creates], start=True)
    done: List[str] = []
    try:
        yield done
    except BaseException:
        _record(folder, [*kept, *(o for o in done if o in creates)], best_effort=True)
        raise
    _record(folder, kept)
