"""Atomic file writes, leftovers of dead writers, safe user-supplied names, checked sizes.

Every file the suite writes goes to a temp file beside it, then ``os.replace``: a crash or Ctrl+C
leaves the old file or the new one, never half of one. A failed write (disk full, quota, read-only,
permission, torch's "unexpected pos") is a one-line UserError; the old file stays, no temp file does.

Leftovers carry their owner, ``owner_tag()`` = ``h<8 hex of the host name>-<pid>``: temp files
``.<name>.<owner>.<random>.tmp`` and partial folders ``.<name>.partial-<owner>`` (renamed onto ``name``
when complete). ``clean_stale_temp`` removes those of dead processes of this host only (another host's
PIDs mean nothing here); legacy ``.<name>.partial-<pid>`` folders count as this host's.
Hostile files: see ``checked_size`` and ``open_regular``."""
from __future__ import annotations

import errno
import io
import json
import operator
import os
import re
import shutil
import socket
import stat
import tempfile
import zlib
from contextlib import suppress
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple

from fruitgan.util.user_io import UserError

# Names the user gives become folder and file names: they can never hold '/', '..' or a leading dot.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")
_UMASK = os.umask(0)   # the umask can only be read by setting it: put it straight back
os.umask(_UMASK)
DAMAGED_FIX = "the file is damaged or not one this suite wrote: recreate it"
BYTES_PER_MB = 1024 ** 2    # file sizes are shown in binary megabytes (MiB), everywhere
FRUITS = ("apple", "banana", "blackberry", "grapes", "pear", "strawberry", "watermelon")


def check_name(name: str, what: str) -> str:
    """Return ``name`` if it is a safe folder/file name component, else raise UserError."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise UserError(f"invalid {what} {name!r}: use 1-64 letters, digits, '_' or '-' "
                        "(no '/', '..', spaces or leading dot)")
    return name


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (one of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _host_tag() -> str:
    # A short stable hash: host names can hold '.', '-' and be long; the tag must parse back.
    return f"h{zlib.crc32(socket.gethostname().encode('utf-8')):08x}"


def owner_tag() -> str:
    """This process's owner tag for leftovers: ``h<8 hex of host>-<pid>`` (pid read now: forks differ)."""
    return f"{_host_tag()}-{os.getpid()}"


def partial_folder(final: Path) -> Path:
    """The hidden folder to build ``final`` in: ``.<name>.partial-<owner>`` beside it."""
    final = Path(final)
    return final.with_name(f".{final.name}.partial-{owner_tag()}")


_PID = r"(?P<pid>[0-9]{1,10})"
_HOST = r"(?P<host>h[0-9a-f]{8})"
TEMP_FILE = re.compile(rf"^\..+\.{_HOST}-{_PID}\.[^.]+\.tmp$")
PARTIAL_FOLDER = re.compile(rf"^\..+\.partial-(?:{_HOST}-)?{_PID}$")  # host part optional: legacy names
LEGACY_TEMP_FILE = re.compile(r"^\..+\.tmp$")  # mkstemp names before owner tags: owner unknown


def owner_of(name: str, is_folder: bool = False) -> Optional[Tuple[Optional[str], int]]:
    """(host tag, or None for a legacy name; pid) of a leftover temp file / partial folder name, else None."""
    match = (PARTIAL_FOLDER if is_folder else TEMP_FILE).match(name)
    return (match.group("host"), int(match.group("pid"))) if match else None


def owner_dead(host: Optional[str], pid: int) -> bool:
    """Whether the owner (from ``owner_of`` or ``parse_owner``) is a dead process of this host."""
    if host is not None and host != _host_tag():
        return False  # another host's PID says nothing about processes here
    return pid != os.getpid() and not process_alive(pid)


def parse_owner(tag: str) -> Optional[Tuple[Optional[str], int]]:
    """(host tag, pid) of an ``owner_tag()`` string (e.g. the tail of a name), else None."""
    match = re.fullmatch(rf"(?:{_HOST}-)?{_PID}", tag)
    return (match.group("host"), int(match.group("pid"))) if match else None


def _remove(path: Path) -> bool:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            os.unlink(path)
        return True
    except OSError:
        return False  # best effort: a leftover we cannot delete must not stop the run


def clean_stale_temp(folder: Path, recursive: bool = True, remove_unknown_owner: bool = False) -> List[Path]:
    """Remove the temp files and partial folders of dead writers in ``folder`` (and its subfolders when
    ``recursive``, never following links); return what went. ``remove_unknown_owner`` also removes legacy
    ``.<name>.<random>.tmp`` files: pass it only holding ``folder``'s RunLock (no other writer there)."""
    removed: List[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        path = Path(entry.path)
        is_dir = entry.is_dir(follow_symlinks=False)
        owner = owner_of(entry.name, is_folder=is_dir)
        if owner is not None:
            if owner_dead(*owner) and _remove(path):
                removed.append(path)
        elif remove_unknown_owner and not is_dir and LEGACY_TEMP_FILE.match(entry.name):
            if _remove(path):
                removed.append(path)
        elif recursive and is_dir:
            removed.extend(clean_stale_temp(path, recursive=True, remove_unknown_owner=remove_unknown_owner))
    return removed


# Write failures that the user can fix, and what to tell them.
_WRITE_FAULTS = {
    errno.ENOSPC: "no space left on the device; free some space (or choose another folder) and run again",
    errno.EDQUOT: "disk quota exceeded; free some space (or choose another folder) and run again",
    errno.EROFS: "read-only file system; choose a writable folder",
    errno.EACCES: "permission denied; choose a folder you can write to (or fix its permissions)",
    errno.EPERM: "operation not permitted; choose a folder you can write to (or fix its permissions)",
}
# torch.save's RuntimeErrors for a full disk ("[enforce fail at ...] unexpected pos N vs M", ...).
_TORCH_WRITE_FAULT = re.compile(r"enforce fail|unexpected pos|PytorchStreamWriter failed", re.IGNORECASE)


def write_error(path: Path, exc: BaseException, existed: bool = False) -> Optional[UserError]:
    """The one-line UserError for a failed write of ``path`` (also for writers that cannot use the atomic_*
    helpers, e.g. files inside a partial folder), or None when ``exc`` is not a write fault."""
    path = Path(path)
    kept = f"{path.name} was left as it was" if existed else "nothing was written"
    if isinstance(exc, OSError) and exc.errno in _WRITE_FAULTS:
        return UserError(f"cannot write {path}: {_WRITE_FAULTS[exc.errno]} ({kept})")
    if isinstance(exc, RuntimeError) and _TORCH_WRITE_FAULT.search(str(exc)):
        return UserError(f"cannot write {path}: the disk is probably full; free some space and run again ({kept})")
    if isinstance(exc, OSError):
        return UserError(f"cannot write {path}: {exc.strerror or exc} ({kept})")
    return None


def _atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> Path:
    path = Path(path)
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{owner_tag()}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc, existed) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)   # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException as exc:
        # Whatever went wrong (disk full, Ctrl+C), the destination keeps its previous content.
        with suppress(OSError):
            os.unlink(tmp)
        fault = write_error(path, exc, existed)
        if fault is None:
            raise
        raise fault from None
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


def inside(base: Path, *parts: str) -> Path:
    """Join ``parts`` under ``base`` and refuse any result that escapes ``base``."""
    base = Path(base).resolve()
    target = base.joinpath(*parts).resolve()
    if target != base and base not in target.parents:
        raise UserError(f"path {'/'.join(parts)!r} escapes {base}; use a plain name")
    return target


def default_workdir() -> Path:
    """The folder holding rawData/ imageData/ npzData/ models/: the scripts' folder, above this package."""
    return Path(__file__).resolve().parents[2]


def checked_size(value: Any, what: str, lo: int, hi: int, path: Path) -> int:
    """``value`` (a size/count read from ``path``) as an int if lo <= value <= hi, else a one-line UserError.
    Call it before allocating anything from it: a damaged or hostile file must not make us allocate 100s of GiB."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)  # ints and numpy integers; not floats or strings
    except TypeError:
        raise UserError(f"{path}: {what} is {value!r}, not a whole number; {DAMAGED_FIX}") from None
    if not lo <= number <= hi:
        raise UserError(f"{path}: {what} is {number}, outside {lo}-{hi}; {DAMAGED_FIX}")
    return number


def read_npy_header(fh: Any, path: Path) -> Tuple[Tuple[int, ...], Any, int]:
    """(shape, dtype, header bytes) of the .npy stream ``fh`` (at its start), reading only the header, so a
    reader can check what a file claims before numpy allocates. Only header versions 1.0 and 2.0 are accepted."""
    import numpy.lib.format as npy_format
    readers = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}
    try:
        version = npy_format.read_magic(fh)
        if version not in readers:
            raise ValueError(f"npy format version {version} is not supported")
        shape, _fortran, dtype = readers[version](fh)
        return tuple(shape), dtype, fh.tell()
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as exc:
        raise UserError(f"{path}: unreadable array header ({exc}); {DAMAGED_FIX}") from None


# ----------------------------------------------------------------------------- special files
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))


def _kind(mode: int) -> str:
    return next((what for test, what in _KINDS if test(mode)), "a special file")


def _problem(exc: OSError, path: Path) -> str:
    if exc.errno == errno.ELOOP:
        return "a symlink loop"
    if exc.errno == errno.ENOENT:
        return "a broken link" if os.path.islink(path) else "missing"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "unreadable (permission denied: fix its permissions)"
    return f"unreadable ({exc.strerror or exc})"


def not_regular(path: Path) -> Optional[str]:
    """None when ``path`` is a regular file (links followed), else what it is instead: "a named pipe
    (FIFO)", "a folder", "a socket", "a device", "a symlink loop", "a broken link", "missing"; nothing is opened."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return _problem(exc, Path(path))
    return None if stat.S_ISREG(mode) else _kind(mode)


def _refusal(path: Path, kind: str, fix: str) -> UserError:
    what = "does not exist" if kind == "missing" else f"is {kind}" + ("" if kind.startswith("unreadable")
                                                                       else ", not a regular file")
    return UserError(f"{path} {what}; {fix}")


def open_regular(path: Path, fix: str):
    """``path`` opened for binary reading if it is a regular file, else a one-line UserError
    "<path> is a named pipe (FIFO), not a regular file; <fix>". Never blocks: O_NONBLOCK and fstat catch
    a FIFO swapped in after the check; a device is never opened."""
    kind = not_regular(path)
    if kind is not None:
        raise _refusal(path, kind, fix)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        raise _refusal(path, _problem(exc, Path(path)), fix) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _refusal(path, _kind(mode), fix)
    os.set_blocking(fd, True)
    return open(fd, "rb")


def read_regular(path: Path, fix: str, limit: Optional[int] = None) -> bytes:
    """The bytes of regular file ``path`` (at most ``limit``: more is a UserError), refused like open_regular."""
    with open_regular(path, fix) as fh:
        try:
            data = fh.read() if limit is None else fh.read(limit + 1)
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror or exc}; {fix}") from None
    if limit is not None and len(data) > limit:
        raise UserError(f"{path} is larger than {limit} bytes, not one this suite wrote; {fix}")
    return data


def list_folder(path: Path, fix: str) -> List[os.DirEntry]:
    """The entries of folder ``path`` sorted by name, or a one-line UserError saying why it cannot be listed."""
    try:
        with os.scandir(path) as entries:
            return sorted(entries, key=lambda e: e.name)
    except OSError as exc:
        kind = not_regular(path)
        what = (_problem(exc, Path(path)) if kind == "a folder" else "a file, not a folder" if kind is None
                else f"{kind}, not a folder")
        raise UserError(f"cannot list {path}: it is {what}; {fix}") from None
