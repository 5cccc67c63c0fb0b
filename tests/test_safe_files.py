"""safe_files: owner-tagged leftovers and their cleaning, write faults as one-line errors, checked sizes."""
import errno
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from fruitgan.util import safe_files
from fruitgan.util.safe_files import (atomic_save_npz, atomic_torch_save, atomic_write_text, checked_size,
                        clean_stale_temp, owner_of, owner_tag, partial_folder)
from fruitgan.util.user_io import UserError


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def host_tag():
    return owner_tag().rsplit("-", 1)[0]


def test_temp_files_carry_their_owner(tmp_path, monkeypatch):
    seen = []

    def spy(fh):
        seen.extend(p.name for p in tmp_path.iterdir())
        fh.write(b"data")

    safe_files._atomic_write(tmp_path / "latest.pt", spy)
    (temp_name,) = seen
    assert owner_of(temp_name) == (host_tag(), os.getpid())
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]
    assert owner_of(partial_folder(tmp_path / "versionA").name, is_folder=True) == (host_tag(), os.getpid())


def test_clean_stale_temp_removes_dead_owners_only(tmp_path):
    dead, alive = dead_pid(), os.getpid()
    parent = os.getppid()  # alive too, and not us
    here = host_tag()
    sub = tmp_path / "model_v1" / "checkpoints"
    sub.mkdir(parents=True)
    dead_temp = sub / f".latest.pt.{here}-{dead}.abc_12.tmp"
    live_temp = sub / f".latest.pt.{here}-{parent}.xyz_34.tmp"
    mine = sub / f".epoch_0001.pt.{here}-{alive}.q1.tmp"
    other_host = sub / f".latest.pt.h00000000-{dead}.abc.tmp"  # same PID, another host: not ours to judge
    legacy = sub / ".latest.pt.k2j3h4g5.tmp"  # pre-owner-tag temp: owner unknown
    result = sub / "latest.pt"
    for f in (dead_temp, live_temp, mine, other_host, legacy, result):
        f.write_bytes(b"x")
    dead_partial = tmp_path / f".versionA.partial-{here}-{dead}"
    legacy_partial = tmp_path / f".versionB.partial-{dead}"
    live_partial = tmp_path / f".versionC.partial-{here}-{parent}"
    for d in (dead_partial, legacy_partial, live_partial):
        d.mkdir()
        (d / "real_000000.png").write_bytes(b"png")
    not_ours = tmp_path / f"versionD.partial-{dead}"  # not hidden: a user's folder, never touched
    not_ours.mkdir()

    removed = clean_stale_temp(tmp_path)

    assert sorted(removed) == sorted([dead_temp, dead_partial, legacy_partial])
    for kept in (live_temp, mine, other_host, legacy, result, live_partial, not_ours):
        assert kept.exists()
    assert clean_stale_temp(tmp_path, remove_unknown_owner=True) == [legacy]
    assert clean_stale_temp(tmp_path) == []


def test_clean_stale_temp_not_recursive_and_missing_folder(tmp_path):
    dead = dead_pid()
    deep = tmp_path / "a" / f".x.{host_tag()}-{dead}.r.tmp"
    deep.parent.mkdir()
    deep.write_bytes(b"x")
    assert clean_stale_temp(tmp_path, recursive=False) == [] and deep.exists()
    assert clean_stale_temp(tmp_path / "nowhere") == []


@pytest.mark.parametrize("code, words", [
    (errno.ENOSPC, "no space left on the device; free some space"),
    (errno.EDQUOT, "disk quota exceeded"),
    (errno.EROFS, "read-only file system; choose a writable folder"),
    (errno.EACCES, "permission denied; choose a folder you can write to"),
])
def test_write_faults_are_one_line_and_keep_the_old_file(tmp_path, monkeypatch, code, words):
    target = tmp_path / "training_config_v1.json"
    atomic_write_text(target, "old")

    def fail(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(UserError) as info:
        atomic_write_text(target, "new")
    message = str(info.value)
    assert message.startswith(f"cannot write {target}: {words}") and "\n" not in message
    assert message.endswith("(training_config_v1.json was left as it was)")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temp left behind


def test_full_disk_in_torch_save_is_one_line(tmp_path, monkeypatch):
    target = tmp_path / "latest.pt"

    def full(obj, fh):
        fh.write(b"PK partial")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(UserError, match=r"^cannot write .*latest.pt: the disk is probably full; .*"
                                        r"\(nothing was written\)$"):
        atomic_torch_save({"a": 1}, target)
    assert list(tmp_path.iterdir()) == []


def test_full_disk_in_npz_and_failing_temp_creation(tmp_path, monkeypatch):
    target = tmp_path / "apple_versionA.npz"
    atomic_save_npz(target, images=np.zeros(3))
    before = target.read_bytes()

    def full(fh, **arrays):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", full)
    with pytest.raises(UserError, match="no space left"):
        atomic_save_npz(target, images=np.ones(3))
    assert target.read_bytes() == before and len(list(tmp_path.iterdir())) == 1

    def no_temp(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(safe_files.tempfile, "mkstemp", no_temp)
    with pytest.raises(UserError, match=r"read-only file system.*\(apple_versionA.npz was left as it was\)"):
        atomic_save_npz(target, images=np.ones(3))


def test_other_errors_and_ctrl_c_pass_through_and_clean_up(tmp_path):
    target = tmp_path / "x.json"

    def bug(fh):
        raise TypeError("a programming error stays a traceback")

    def interrupt(fh):
        fh.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(TypeError):
        safe_files._atomic_write(target, bug)
    with pytest.raises(KeyboardInterrupt):
        safe_files._atomic_write(target, interrupt)
    assert list(tmp_path.iterdir()) == []


def test_checked_size_and_shape(tmp_path):
    path = tmp_path / "d.npz"
    assert checked_size(np.int64(28), "resolution", 8, 512, path) == 28
    for bad in (10**12, -1, 7):
        with pytest.raises(UserError, match=r"d.npz: resolution is -?\d+, outside 8-512; .*recreate it$"):
            checked_size(bad, "resolution", 8, 512, path)
    for bad in (28.0, "28", True, None):
        with pytest.raises(UserError, match="resolution is .*not a whole number"):
            checked_size(bad, "resolution", 8, 512, path)


# ------------------------------------------------------------------------------ special files (issue 33)
@pytest.mark.parametrize("kind, said", [("fifo", "a named pipe (FIFO)"), ("folder", "a folder"),
                                        ("loop", "a symlink loop"), ("broken", "a broken link"),
                                        ("device", "a device"), ("missing", "does not exist")])
def test_a_regular_file_is_required_and_a_fifo_is_never_waited_on(tmp_path, kind, said):
    path = tmp_path / "data.bin"
    if kind == "fifo":
        os.mkfifo(path)           # opened plainly, reading it would wait for a writer forever
    elif kind == "folder":
        path.mkdir()
    elif kind == "loop":
        path.symlink_to(path.name)
    elif kind == "broken":
        path.symlink_to("nowhere")
    elif kind == "device":
        path = "/dev/null"
    assert safe_files.not_regular(path) is not None
    with pytest.raises(UserError) as info:
        safe_files.read_regular(path, "put the real file there")
    text = str(info.value)
    assert text.startswith(str(path)) and said in text and text.endswith("put the real file there")


def test_a_regular_file_is_read_and_a_size_limit_holds(tmp_path):
    path = tmp_path / "f.json"
    path.write_bytes(b"12345")
    assert safe_files.not_regular(path) is None and safe_files.read_regular(path, "x") == b"12345"
    with pytest.raises(UserError, match="larger than 4 bytes"):
        safe_files.read_regular(path, "x", limit=4)


def test_a_folder_that_cannot_be_listed_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match=r"cannot list .*file: it is a file, not a folder; fix it"):
        safe_files.list_folder(tmp_path / "file", "fix it")
    assert [e.name for e in safe_files.list_folder(tmp_path, "fix it")] == ["file"]
