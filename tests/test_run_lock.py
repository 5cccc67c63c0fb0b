"""run_lock: one writer per folder, across processes, kill -9 and leftover lock files."""
import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from fruitgan.util import run_lock
from conftest import ROOT
from fruitgan.util.run_lock import RunLock, current_holder, lock_path
from fruitgan.util.user_io import UserError

# A child that takes the lock, says so on stdout, then holds it until its stdin closes.
HOLDER = """
import sys
sys.path.insert(0, {root!r})
from fruitgan.util.run_lock import RunLock
from fruitgan.util.user_io import UserError
try:
    lock = RunLock({folder!r}, what="model v1").acquire()
except UserError as exc:
    print("refused:", exc, flush=True)
    sys.exit(2)
print("locked", flush=True)
sys.stdin.read()
lock.release()
"""


def start_holder(folder):
    code = HOLDER.format(root=str(ROOT), folder=str(folder))
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_second_writer_is_refused_with_one_line_naming_the_holder(tmp_path):
    folder = tmp_path / "models" / "model_v1"
    holder = start_holder(folder)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(UserError) as info:
            RunLock(folder, what="model v1", advice="wait for it or choose another name").acquire()
        message = str(info.value)
        assert message.startswith(f"model v1 is being written by PID {holder.pid} on host {socket.gethostname()} since ")
        assert message.endswith("; wait for it or choose another name") and "\n" not in message
        assert current_holder(folder).pid == holder.pid
    finally:
        holder.stdin.close()
        assert holder.wait() == 0
    assert current_holder(folder) is None
    assert not lock_path(folder).exists()  # released: its file is gone
    with RunLock(folder, what="model v1") as lock:
        assert lock.held and lock.previous is None  # a clean release leaves nothing to take over


def test_of_several_contenders_exactly_one_wins(tmp_path):
    folder = tmp_path / "imageData" / "apple" / "versionA"
    procs = [start_holder(folder) for _ in range(4)]
    try:
        first_lines = [p.stdout.readline() for p in procs]
        # losers exit at once; the winner holds until its stdin closes, so the outcome needs no timing
        assert first_lines.count("locked\n") == 1
        for line in first_lines:
            if line != "locked\n":
                # "by PID n on host h since t", or "by another process (just started)" if it had not yet
                # written its record: either way the one-line refusal
                assert line.startswith("refused: model v1 is being written by ") and line.count("\n") == 1
    finally:
        for p in procs:
            p.stdin.close()
    assert sorted(p.wait() for p in procs) == [0, 2, 2, 2]


def test_kill_9_of_the_holder_frees_the_lock_for_the_next_taker(tmp_path):
    folder = tmp_path / "model_k"
    holder = start_holder(folder)
    assert holder.stdout.readline() == "locked\n"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert lock_path(folder).exists()  # the dead run's lock file stays behind...
    with RunLock(folder, what="model k") as lock:  # ...and is taken over
        assert lock.previous is not None and lock.previous.pid == holder.pid
        record = json.loads(lock_path(folder).read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()


@pytest.mark.parametrize("record", [
    {"pid": "dead", "host": "this"},
    {"pid": 1, "host": "some-other-host.example"},  # a PID that is alive here means nothing for another host
    "not json at all",
    "",
])
def test_a_leftover_lock_file_without_a_live_lock_is_taken_over(tmp_path, record):
    folder = tmp_path / "model_old"
    if isinstance(record, dict):
        record = dict(record, pid=dead_pid() if record["pid"] == "dead" else record["pid"],
                      host=socket.gethostname() if record["host"] == "this" else record["host"], started=0)
        text = json.dumps(record)
    else:
        text = record
    lock_path(folder).write_text(text)
    with RunLock(folder, what="model old") as lock:
        assert lock.held
        if isinstance(record, dict):
            assert lock.previous.pid == record["pid"]
    assert not lock_path(folder).exists()


def test_one_process_holds_two_locks_but_not_one_twice(tmp_path):
    a, b = tmp_path / "model_a", tmp_path / "model_b"
    with RunLock(a, what="model a"), RunLock(b, what="model b") as lock_b:
        assert lock_b.held and current_holder(a).pid == os.getpid()
        with pytest.raises(UserError, match=r"^model a is already being written by this process"):
            RunLock(a, what="model a").acquire()
        holder = start_holder(b)  # another process is refused while we hold b
        out, _ = holder.communicate("")
        assert holder.returncode == 2 and f"by PID {os.getpid()} on host" in out
    assert current_holder(a) is None and current_holder(b) is None


def test_lock_survives_overwrite_of_the_folder(tmp_path):
    folder = tmp_path / "model_v"
    with RunLock(folder, what="model v"):
        folder.mkdir()
        (folder / "x.pt").write_bytes(b"x")
        import shutil
        shutil.rmtree(folder)  # what --overwrite does
        holder = start_holder(folder)
        out, _ = holder.communicate("")
        assert holder.returncode == 2 and out.startswith("refused: model v1 is being written by PID")


def test_a_forked_child_does_not_keep_the_lock(tmp_path):
    """A worker forked by the holder must not keep the lock alive after the holder is gone."""
    folder = tmp_path / "model_f"
    read_end, write_end = os.pipe()
    ready_read, ready_write = os.pipe()
    lock = RunLock(folder, what="model f").acquire()
    pid = os.fork()
    if pid == 0:  # the worker: says it started (fork hooks have run by then), lives until the pipe closes
        os.close(write_end)
        os.write(ready_write, b"r")
        os.read(read_end, 1)
        os._exit(0)
    os.close(read_end)
    os.close(ready_write)
    try:
        assert os.read(ready_read, 1) == b"r"
        os.close(ready_read)
        # The holder dies without releasing (as with kill -9): its descriptor closes, the file stays.
        os.close(lock._fd)
        lock._fd = None
        run_lock._HELD.clear()
        assert current_holder(folder) is None  # while the worker still runs
        with RunLock(folder, what="model f") as again:
            assert again.previous.pid == os.getpid()
    finally:
        os.close(write_end)
        os.waitpid(pid, 0)


def test_unwritable_parent_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "models"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(UserError, match=r"^cannot create .*models.* for model z: .*; choose a writable folder$"):
        RunLock(blocker / "model_z", what="model z").acquire()


# ------------------------------------------------------------------------------ special lock files (issue 33)
@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_a_special_file_where_the_lock_belongs_is_refused_not_waited_on(tmp_path, kind):
    folder = tmp_path / "model"
    make = os.mkfifo if kind == "fifo" else os.mkdir
    make(lock_path(folder))
    for attempt in (lambda: current_holder(folder), lambda: RunLock(folder, "model m").acquire()):
        with pytest.raises(UserError, match=r"the lock file .*\.model\.lock is a .*, not a regular file; remove it"):
            attempt()


# ------------------------------------------------------------------------------ unfinished runs (issue 33)
def test_a_stopped_run_leaves_its_own_outputs_recorded_and_a_finished_one_nothing(tmp_path):
    folder = tmp_path / "version1"
    with pytest.raises(KeyboardInterrupt):
        with run_lock.unfinished_until_done(folder, ["apple", "banana"], ["apple", "banana"]) as done:
            assert run_lock.left_unfinished(folder) == ["apple", "banana"]   # what a kill -9 now would leave
            done.append("apple")
            raise KeyboardInterrupt
    assert run_lock.left_unfinished(folder) == ["apple"]        # Ctrl+C: only what it completed is its own
    with run_lock.unfinished_until_done(folder, ["pear"], ["pear"]) as done:   # another fruit: apple stays
        done.append("pear")
    assert run_lock.left_unfinished(folder) == ["apple"]
    with run_lock.unfinished_until_done(folder, [], ["apple"]) as done:        # apple redone: nothing left
        done.append("apple")
    assert run_lock.left_unfinished(folder) == [] and not run_lock.unfinished_path(folder).exists()


def test_a_damaged_unfinished_record_names_nothing(tmp_path):
    folder = tmp_path / "version1"
    for text in ("{", "[1]", '{"outputs": 3}', '{"outputs": [1, "apple"]}'):
        run_lock.unfinished_path(folder).write_text(text)
        assert run_lock.left_unfinished(folder) == ([] if "apple" not in text else ["apple"])
