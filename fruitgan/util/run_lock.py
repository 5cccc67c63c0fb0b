"""One writer per folder: an exclusive, crash-safe lock for a model folder or a dataset version.

Public API::

    from fruitgan.util.run_lock import RunLock

    with RunLock(folder, what="model v1", advice="wait for it to finish or choose another name") as lock:
        if lock.previous is not None:   # a run that died (kill -9, power cut) held it before us
            ...                         # e.g. clean its leftovers: safe_files.clean_stale_temp(folder)
        ...                             # every write into ``folder`` (and --overwrite's rmtree of it)

    RunLock(folder, what, advice=...).acquire() / .release()   # the same without ``with``
    lock_path(folder) -> Path          # where the lock of ``folder`` lives
    current_holder(folder) -> Holder | None   # who writes ``folder`` now (None: nobody)
    refuse_if_held(folder, what, advice=...)  # the same one-line refusal, early (e.g. before prompts)
    left_unfinished(folder); with unfinished_until_done(folder, creates, writes) as done: ...
        # which outputs a run that never finished (kill -9, Ctrl+C, an error) left: the next run of the
        # same command replaces them instead of refusing them as "already exists"

A second writer gets a one-line ``user_io.UserError``::

    model v1 is being written by PID 1234 on host h since 12:03; wait for it to finish or choose another name

Design (why it is safe):

* The lock is ``fcntl.flock`` on an open file: the kernel releases it when the holder exits in any
  way, kill -9 included, so a lock of a dead process is never "held". A leftover lock file of a
  dead run is simply taken over (``previous`` tells the new holder whose it was); there is no
  "is that PID alive?" guess, so a PID reused by another process, here or on another host of a
  shared file system, cannot fool it. The PID, host and start time written into the file only
  serve the refusal message.
* The lock file is a hidden SIBLING of the folder, ``<parent>/.<folder name>.lock``, not a file
  inside it: ``--overwrite`` deletes and recreates the folder, and a partial folder is renamed
  over it when a dataset version is published; a lock inside would be deleted or replaced with the
  folder while still held, and a second writer would then lock a fresh file and also "win". The
  sibling also exists before the folder does, so it guards the folder's creation too. Readers
  skip it like every hidden entry.
* Release deletes the lock file while still holding it; a taker that locked a file someone has
  just deleted notices (the path no longer names the inode it locked) and tries again, so two
  takers can never both win.
* The lock file descriptor is close-on-exec and is closed in forked children (worker pools):
  a child left running after its parent was killed cannot keep the lock alive. (flock locks
  belong to the open file, which fork shares; closing the child's copy does not release the
  parent's lock.)
* One process may hold several locks on different folders. Taking a lock this process already
  holds is refused with the same one-line message (it would otherwise deadlock or double-write).
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

from fruitgan.util.safe_files import atomic_write_json, not_regular, process_alive, read_regular
from fruitgan.util.user_io import UserError

LOCK_SUFFIX = ".lock"
DEFAULT_ADVICE = "wait for it to finish or choose another name"
# A taker loops only when a holder released (deleted the file) between its open() and flock();
# each retry means another process made progress, so a small bound is never reached in practice.
MAX_TAKE_ATTEMPTS = 50
# Lock files are tiny JSON records; reading more than this means it is not one of ours.
MAX_RECORD_BYTES = 4096

# Locks held by this process, by lock file path: lets fork children close their copies and
# refuses a second take of the same lock by the same process. Guarded by _HELD_GUARD (threads).
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
        parts = []
        parts.append(f"PID {self.pid}" if self.pid is not None else "another process")
        if self.host:
            parts.append(f"on host {self.host}")
        if self.started is not None:
            parts.append(f"since {_clock(self.started)}")
        return " ".join(parts)

    def is_this_host(self) -> bool:
        return self.host == socket.gethostname()


def _clock(stamp: float) -> str:
    when = datetime.fromtimestamp(stamp)
    return when.strftime("%H:%M") if when.date() == datetime.now().date() else when.strftime("%Y-%m-%d %H:%M")


def lock_path(folder: Path) -> Path:
    """The lock file of ``folder``: ``<parent>/.<name>.lock`` (a sibling, see the module docstring)."""
    # resolve(): two writers naming one folder through different links must meet at one lock file
    folder = Path(folder).resolve()
    return folder.with_name(f".{folder.name}{LOCK_SUFFIX}")


def _parse_record(raw: bytes) -> Optional[Holder]:
    if not raw.strip():
        return None  # the holder has the lock but has not written its record yet
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return Holder(None, None, None)
    if not isinstance(doc, dict):
        return Holder(None, None, None)
    pid, host, started = doc.get("pid"), doc.get("host"), doc.get("started")
    return Holder(
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None,
        host=host if isinstance(host, str) and host else None,
        started=float(started) if isinstance(started, (int, float)) and not isinstance(started, bool) else None,
    )


def _read_record(fd: int) -> Optional[Holder]:
    try:
        return _parse_record(os.pread(fd, MAX_RECORD_BYTES, 0))
    except OSError:
        return None


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
        key = str(self.path)
        with _HELD_GUARD:
            if key in _HELD:
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
        raise UserError(f"could not take the lock {self.path} for {self.what} (it keeps changing hands); "
                        "run again")

    def _open(self) -> int:
        try:
            # os.open's descriptors are close-on-exec (not inherited by subprocesses); O_NONBLOCK: a FIFO
            # put where the lock file belongs must be refused, not waited on.
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
        if holder is None:
            return f"{self.what} is being written by another process (just started); {self.advice}"
        if holder.pid is not None and holder.is_this_host() and not process_alive(holder.pid):
            # The record is still the dead run's: the new holder took over and has not yet
            # written its own (a kernel lock never outlives its process, so this is not the dead one).
            return f"{self.what} is being written by another process (just started); {self.advice}"
        return f"{self.what} is being written by {holder.describe()}; {self.advice}"

    def release(self) -> None:
        """Give the lock up and delete its file (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with _HELD_GUARD:
            _HELD.pop(str(self.path), None)
        try:
            # Delete while still holding: a taker that opened the old file sees it unnamed and retries.
            if self._still_named(fd):
                os.unlink(self.path)
        except OSError:
            pass  # a lock file left behind is harmless: the next taker locks and reuses it
        os.close(fd)  # releases the flock


def _special(path: Path, kind: str) -> str:
    return f"the lock file {path} is {kind}, not a regular file; remove it (it only marks a running writer) and run again"


def _refuse_special(fd: int, path: Path) -> None:
    """UserError (closing ``fd``) when the lock file opened as ``fd`` is a FIFO, folder, socket or device."""
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise UserError(_special(path, not_regular(path) or "a special file"))


def current_holder(folder: Path) -> Optional[Holder]:
    """Who holds ``folder``'s lock now, or None when nobody does.

    A probe for listings (it never creates the file): it holds a shared lock for an instant, so a
    writer starting in that very instant is refused as if busy; never call it in a loop.
    """
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
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_record(fd) or Holder(None, None, None)
        except OSError:
            return None
        return None  # we got it, so nobody writes; closing the descriptor lets it go
    finally:
        os.close(fd)


def refuse_if_held(folder: Path, what: str, advice: str = DEFAULT_ADVICE) -> None:
    """Raise the refusal a second writer gets when another process writes ``folder`` now.

    For an early, clear answer (before questions or checks that would say something less
    precise); the RunLock taken before writing is still what guarantees one writer.
    """
    holder = current_holder(folder)
    if holder is not None and holder.pid != os.getpid():
        raise UserError(RunLock(folder, what, advice)._refusal(holder))


def _close_in_child() -> None:
    global _HELD_GUARD
    _HELD_GUARD = threading.Lock()  # another thread may have held it at the fork
    # A forked child shares the parent's open lock files; closing its copies (never LOCK_UN,
    # which would release the parent's lock) means only the parent's life keeps the lock.
    for lock in list(_HELD.values()):
        if lock._fd is not None:
            try:
                os.close(lock._fd)
            except OSError:
                pass
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
    """The outputs (e.g. fruits) a run of ``folder`` was creating when it stopped without finishing.

    Its own half-done output, which the next run replaces without --overwrite (saying so). Read it
    holding ``folder``'s RunLock: then no live run owns the record. A damaged record names nothing.
    """
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
    """Write (atomically) the record of ``outputs``, or remove it when there are none (but at the ``start``: a
    run writes the same files whatever it creates). ``best_effort``: on the way out of a failed run, whose own
    error must not be masked by one of the record's."""
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
    """Hold ``folder``'s RunLock around this block. Until it ends, the outputs it ``creates`` (new ones) are
    recorded as unfinished, beside those an earlier stopped run left and this one does not rewrite (not in
    ``writes``). Append each output to the yielded list once complete: if the block fails (Ctrl+C, an error),
    the complete ones it created stay recorded, its own half-done work for the next run to replace."""
    kept = [o for o in left_unfinished(folder) if o not in writes]
    _record(folder, [*kept, *creates], start=True)
    done: List[str] = []
    try:
        yield done
    except BaseException:
        _record(folder, [*kept, *(o for o in done if o in creates)], best_effort=True)
        raise
    _record(folder, kept)
