"""Fault injection (issue 12): kill -9 at seeded random points, no space left, concurrent writers, hostile files.

How faults are made:
* kill -9: the scripts run under HOOK (below), which counts the file events under the work folder
  (every safe_files atomic write, every PNG written into a partial version folder, every os.replace)
  and sends itself SIGKILL at event N, N drawn by a seeded RNG from the events an uninterrupted run
  makes. Then every file must load and the next run (or --resume) must give the uninterrupted result.
* no space left: a real full disk needs a tiny tmpfs (root) which this CI does not have, so the
  write is monkeypatched: the file object safe_files writes through raises ENOSPC, and torch.save
  raises torch's own "enforce fail ... unexpected pos" error.
* concurrent writers: HOOK can also pause a real run at its first file event (holding its lock)
  until the test lets it go, so the second writer meets a live first one.
* hostile files: one per format, each must give exit code 2 and one stderr line, no traceback.
Budgets are tiny (28 px, a dozen images, 2-3 epochs) to keep this file within about two minutes.
"""
import errno
import io
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, SAMPLE, TINY_FRUITS, TINY_VERSION

HOOK = r"""
import os, runpy, signal, sys, time
root = os.path.realpath(os.environ["FAULT_ROOT"])
kill_at = int(os.environ.get("FAULT_KILL_AT", "0"))
count_file = os.environ.get("FAULT_COUNT_FILE")
pause = os.environ.get("FAULT_PAUSE_UNTIL")
events = [0]

def event(path):
    if not os.path.realpath(str(path)).startswith(root):
        return                      # caches of libraries etc.: not the run's files
    events[0] += 1
    if count_file:
        with open(count_file, "w") as fh:
            fh.write(str(events[0]))
    if pause and events[0] == 1:
        open(pause + ".reached", "w").close()
        while not os.path.exists(pause):
            time.sleep(0.02)
    if events[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

def wrap(owner, name, path_of):
    original = getattr(owner, name)
    def wrapped(*args, **kwargs):
        event(path_of(*args))
        return original(*args, **kwargs)
    setattr(owner, name, wrapped)

from fruitgan.util import safe_files

from fruitgan.data import image_version
wrap(safe_files, "_atomic_write", lambda path, *rest: path)
wrap(image_version.FruitWriter, "write", lambda self, name, *rest: self.partial / name)
wrap(os, "replace", lambda src, dst, *rest: dst)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

ENV = dict(os.environ, PYTHONUNBUFFERED="1", MPLBACKEND="Agg", TQDM_DISABLE="1", OMP_NUM_THREADS="1")
FRUITS = TINY_FRUITS.split(",")
CONVERT = ["--yes", "--resolution", "28", "--count", "10", "--augment", "--fruits", "apple,banana",
           "--workers", "1", "--no-progress"]


def hooked(script, workdir, *args, kill_at=0, count_file=None, pause=None, wait=True):
    env = dict(ENV, FAULT_ROOT=str(workdir), FAULT_KILL_AT=str(kill_at))
    if count_file:
        env["FAULT_COUNT_FILE"] = str(count_file)
    if pause:
        env["FAULT_PAUSE_UNTIL"] = str(pause)
    cmd = [sys.executable, "-c", HOOK, str(ROOT / script), "--workdir", str(workdir), *args]
    if not wait:
        return subprocess.Popen(cmd, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=300)


def plain(script, workdir, *args):
    return subprocess.run([sys.executable, str(ROOT / script), "--workdir", str(workdir), *args], env=ENV, cwd=ROOT,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)


@pytest.fixture
def one_thread():
    """Training in this process: one torch thread (as the subprocesses get), else 2 cores thrash."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def one_line_error(stderr):
    """The one error line (progress bars, "name:  40%|####  | ...", aside); no traceback."""
    lines = [line for line in stderr.splitlines() if line.strip() and "%|" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[0]


def leftovers(folder):
    """Temp files, partial folders and swapped-out old versions anywhere under ``folder``."""
    return [p for p in Path(folder).rglob(".*") if ".tmp" in p.name or ".partial-" in p.name or ".old-" in p.name]


def wait_for(path, proc):
    deadline = time.monotonic() + 120
    while not Path(path).exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the paused run never reached its first write"
        time.sleep(0.02)


def seeded_points(seed, total, n):
    rng = random.Random(seed)
    return [rng.randint(1, total) for _ in range(n)]


# ------------------------------------------------------------------------------ kill -9: conversion, packing

def version_files(workdir, version):
    out = {}
    for fruit in ("apple", "banana"):
        folder = workdir / "imageData" / fruit / f"version{version}"
        for p in sorted(folder.iterdir()):
            if p.suffix == ".png":
                out[(fruit, p.name)] = p.read_bytes()
        meta = json.loads((folder / "metadata.json").read_text())
        out[(fruit, "metadata")] = {k: v for k, v in meta.items() if k not in ("created", "version")}
    return out


def all_versions_load(workdir):
    from fruitgan.data import image_version
    for found in image_version.scan_image_versions(workdir):
        if found.complete:
            image_version.read_version(workdir, found.fruit, found.version, progress=False)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A work folder with the reference version 'ref' and how many file events converting it took."""
    base = tmp_path_factory.mktemp("faults")
    shutil.copytree(SAMPLE, base / "rawData" / "sample")
    count = base / "count.txt"
    r = hooked("rawDataToImage.py", base, *CONVERT, "--version", "ref", count_file=count)
    assert r.returncode == 0, r.stderr
    return base, int(count.read_text())


@pytest.mark.parametrize("seed", [1, 2, "last"])
def test_kill_during_conversion_then_the_same_command_gives_the_uninterrupted_version(converted, seed):
    """Issue 33: the very same command finishes the job; a fruit the killed run had published is its own
    half of the version, replaced with a line saying so (not refused as 'version already exists')."""
    base, total = converted
    version = f"k{seed}"
    kill_at = total if seed == "last" else seeded_points(seed, total, 1)[0]   # last: banana's final rename
    r = hooked("rawDataToImage.py", base, *CONVERT, "--version", version, kill_at=kill_at)
    assert r.returncode == -signal.SIGKILL
    all_versions_load(base)          # whatever was published is complete; partial folders are hidden
    published = [f for f in ("apple", "banana") if (base / "imageData" / f / f"version{version}").exists()]
    assert published or seed != "last"
    r = plain("rawDataToImage.py", base, *CONVERT, "--version", version)
    assert r.returncode == 0, r.stderr
    if published:
        assert f"version {version} of {', '.join(published)} was left unfinished" in r.stdout
    assert version_files(base, version) == version_files(base, "ref")
    assert leftovers(base / "imageData") == [] and not list((base / "imageData").glob(".*unfinished*"))


def test_kill_between_the_publish_renames_keeps_the_old_version(converted, tmp_path):
    """The one moment two renames matter: old version moved aside, the new one not yet in place."""
    base, _ = converted
    work = tmp_path / "w"
    shutil.copytree(base / "rawData", work / "rawData")
    replace = [*CONVERT, "--version", "p", "--fruits", "apple", "--seed", "9"]
    assert plain("rawDataToImage.py", work, *CONVERT, "--version", "p", "--fruits", "apple").returncode == 0
    folder = work / "imageData/apple/versionp"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    count = tmp_path / "count.txt"
    r = hooked("rawDataToImage.py", work, *replace, "--overwrite", "--version", "other", count_file=count)
    assert r.returncode == 0, r.stderr   # the same run on a fresh name: its events, minus the old's move
    r = hooked("rawDataToImage.py", work, *replace, "--overwrite", kill_at=int(count.read_text()) + 1)
    assert r.returncode == -signal.SIGKILL   # killed at the last rename: the new version into place
    assert not folder.exists()
    r = plain("rawDataToImage.py", work, *CONVERT, "--version", "p", "--fruits", "apple")
    assert r.returncode == 2 and "version p already exists for apple" in one_line_error(r.stderr)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before   # the old version, back whole
    assert leftovers(work / "imageData") == []


def test_a_writer_restores_the_old_version_a_killed_publish_moved_aside(converted, tmp_path):
    from fruitgan.data import image_version
    from fruitgan.util.safe_files import owner_tag

    base, _ = converted
    work = tmp_path / "w"
    shutil.copytree(base / "imageData", work / "imageData")
    folder = work / "imageData/apple/versionref"
    dead = subprocess.run([sys.executable, "-c", "from fruitgan.util import safe_files; print(safe_files.owner_tag())"],
                          capture_output=True, text=True).stdout.strip()    # a process that has exited
    assert dead != owner_tag()
    old = folder.with_name(f".versionref.old-{dead}")
    os.replace(folder, old)
    image_version.recover_fruit_folder(work, "apple", "ref")
    assert folder.is_dir() and not old.exists()
    image_version.read_version(work, "apple", "ref", progress=False)


def npz_arrays(workdir, version):
    from fruitgan.data.npz_format import npz_path, read_npz

    out = {}
    for fruit in ("apple", "banana"):
        packed = read_npz(npz_path(workdir, fruit, version), fruit, version)
        meta = {k: v for k, v in packed.metadata.items() if k != "npz_created"}
        out[fruit] = (packed.images, packed.augmented, packed.source_index, meta)
    return out


def test_kill_during_packing_then_rerun_gives_the_uninterrupted_npz(converted):
    base, _ = converted
    count = base / "pack_count.txt"
    r = hooked("imageToNPZ.py", base, "--yes", "--version", "ref", count_file=count)
    assert r.returncode == 0, r.stderr
    reference = npz_arrays(base, "ref")
    total = int(count.read_text())
    for kill_at in [*seeded_points(3, total, 2), total]:   # total: at banana's final rename, apple written
        for p in (base / "npzData").glob("*.npz"):
            p.unlink()
        r = hooked("imageToNPZ.py", base, "--yes", "--version", "ref", kill_at=kill_at)
        assert r.returncode == -signal.SIGKILL
        from fruitgan.data.npz_format import list_versions, npz_path, read_npz
        for version, fruits in list_versions(base).items():   # what exists is whole
            for fruit in fruits:
                read_npz(npz_path(base, fruit, version), fruit, version)
        written = list_versions(base).get("ref", [])
        assert written or kill_at != total
        r = plain("imageToNPZ.py", base, "--yes", "--version", "ref")   # the very same command
        assert r.returncode == 0, r.stderr
        if written:
            assert f"{', '.join(written)} of npz version ref left unfinished" in r.stdout
        again = npz_arrays(base, "ref")
        for fruit, arrays in reference.items():
            for a, b in zip(arrays[:3], again[fruit][:3]):
                assert np.array_equal(a, b)
            assert arrays[3] == again[fruit][3]
        assert leftovers(base / "npzData") == [] and not list((base / "npzData").glob(".*unfinished*"))


# ------------------------------------------------------------------------------ kill -9: training

# Epoch 1 is a milestone, so a kill can land right after one (its networks are written then).
TRAIN = ["--yes", "--dataset-version", TINY_VERSION, "--epochs", "2", "--batch-size", "8", "--milestones", "1",
         "--device", "cpu", "--no-eval", "--seed", "5"]


def weights(workdir, name):
    folder = workdir / "models" / f"model_{name}"
    return {(f, kind): torch.load(folder / f"{kind}_{f}.pt", weights_only=True)["state_dict"]
            for f in FRUITS for kind in ("generator", "discriminator")}


def every_model_file_loads(folder):
    for p in folder.rglob("*"):
        if p.name.startswith("."):
            continue
        if p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".pt":
            torch.load(p, weights_only=True)


@pytest.fixture(scope="module")
def trained(tiny_dataset_dir, tmp_path_factory):
    """A work folder with the uninterrupted run 'ref' (TRAIN, under HOOK) and how many file events it took;
    tests that write to it work on a copy."""
    base = tmp_path_factory.mktemp("trained")
    shutil.copytree(tiny_dataset_dir / "npzData", base / "npzData")
    count = base / "train_count.txt"
    r = hooked("train_gan.py", base, *TRAIN, "--model-name", "ref", count_file=count)
    assert r.returncode == 0, r.stderr
    return base, int(count.read_text())


def test_kill_during_training_then_resume_gives_the_uninterrupted_weights(trained, tiny_workdir, capsys, one_thread):
    shutil.copytree(trained[0] / "models", tiny_workdir / "models")     # as if 'ref' had just been trained here
    total = trained[1]
    reference = weights(tiny_workdir, "ref")
    # Event 3 comes right after the config is written (events 1-2: its temp file, its rename): a run with
    # saved settings and no checkpoint, which --resume starts at epoch 1. Then a seeded point anywhere.
    for i, kill_at in enumerate([3, seeded_points(5, total, 1)[0]]):
        name = f"k{i}"
        r = hooked("train_gan.py", tiny_workdir, *TRAIN, "--model-name", name, kill_at=kill_at)
        assert r.returncode == -signal.SIGKILL
        folder = tiny_workdir / "models" / f"model_{name}"
        every_model_file_loads(folder)
        started = (folder / "info" / f"training_config_{name}.json").exists()
        assert started or kill_at < 3
        again = ["--yes", "--model-name", name, "--resume"] if started else [*TRAIN, "--model-name", name]
        # The next run in this process, on one thread as the killed one had (the kill is what crossed processes).
        code, err = run_in_process("train_gan.py", ["--workdir", str(tiny_workdir), *again], capsys)
        assert code == 0, err
        summary = json.loads((folder / "info" / f"training_summary_{name}.json").read_text())
        assert summary["status"] == "complete" and summary["epochs_done"] == 2
        got = weights(tiny_workdir, name)
        for key, state in reference.items():
            for k, tensor in state.items():
                assert torch.allclose(tensor.float(), got[key][k].float(), atol=1e-6), (kill_at, key, k)
        assert leftovers(folder) == []


# ------------------------------------------------------------------------------ two writers of one model / version

def test_two_conversions_of_one_version_one_wins_the_other_is_refused(converted, tmp_path):
    base, _ = converted
    work = tmp_path / "w"
    shutil.copytree(base / "rawData", work / "rawData")
    go = tmp_path / "go"
    first = hooked("rawDataToImage.py", work, *CONVERT, "--version", "c", pause=go, wait=False)
    try:
        wait_for(f"{go}.reached", first)
        second = plain("rawDataToImage.py", work, *CONVERT, "--version", "c", "--overwrite")
        assert second.returncode == 2
        line = one_line_error(second.stderr)
        assert f"image version c is being written by PID {first.pid}" in line
    finally:
        go.touch()
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    all_versions_load(work)
    assert version_files(work, "c")[("apple", "metadata")]["count"] == 10


def test_a_second_run_or_overwrite_of_a_training_model_is_refused(tiny_workdir, tmp_path, capsys):
    import train_gan
    from fruitgan.util.user_io import run_main

    go = tmp_path / "go"
    first = hooked("train_gan.py", tiny_workdir, *TRAIN, "--model-name", "busy", pause=go, wait=False)
    try:
        wait_for(f"{go}.reached", first)
        for extra in ([], ["--overwrite"]):
            code = run_main(train_gan.main, ["--workdir", str(tiny_workdir), *TRAIN, "--model-name", "busy", *extra])
            assert code == 2
            line = one_line_error(capsys.readouterr().err)
            assert f"model busy is being written by PID {first.pid}" in line
    finally:
        go.touch()
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    summary = json.loads((tiny_workdir / "models/model_busy/info/training_summary_busy.json").read_text())
    assert summary["status"] == "complete" and summary["epochs_done"] == 2


# ------------------------------------------------------------------------------ no space left (simulated)

class FullDisk(io.RawIOBase):
    """A file that takes ``room`` bytes, then fails like a full disk."""

    def __init__(self, real, room):
        self.real, self.room = real, room

    def writable(self):
        return True

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.real.write(data)

    def fileno(self):
        return self.real.fileno()

    def flush(self):
        if not self.real.closed:
            self.real.flush()

    def close(self):
        self.real.close()
        super().close()


def test_no_space_left_while_packing_is_one_line_and_keeps_the_old_npz(converted, tmp_path, monkeypatch, capsys):
    import imageToNPZ
    from fruitgan.util.user_io import run_main

    base, _ = converted
    work = tmp_path / "w"
    shutil.copytree(base / "imageData", work / "imageData")
    assert plain("imageToNPZ.py", work, "--yes", "--version", "ref").returncode == 0
    before = (work / "npzData/apple_versionref.npz").read_bytes()
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: FullDisk(real_fdopen(fd, *a, **k), 100))
    code = run_main(imageToNPZ.main, ["--workdir", str(work), "--yes", "--version", "ref", "--overwrite"])
    assert code == 2
    line = one_line_error(capsys.readouterr().err)
    assert "apple_versionref.npz" in line and "no space left" in line and "was left as it was" in line
    assert (work / "npzData/apple_versionref.npz").read_bytes() == before
    assert leftovers(work / "npzData") == []


def test_a_full_disk_during_training_is_one_line(tiny_workdir, monkeypatch, capsys, one_thread):
    import train_gan
    from fruitgan.util.user_io import run_main

    real_save = torch.save

    def full(obj, f, *args, **kwargs):
        if isinstance(f, io.BytesIO):        # in memory (the estimate's size probe): no disk involved
            return real_save(obj, f, *args, **kwargs)
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 4224 vs 4112")

    monkeypatch.setattr(torch, "save", full)
    code = run_main(train_gan.main, ["--workdir", str(tiny_workdir), *TRAIN, "--model-name", "full"])
    assert code == 2
    line = one_line_error(capsys.readouterr().err)
    assert "latest.pt" in line and "disk is probably full" in line
    folder = tiny_workdir / "models/model_full"
    every_model_file_loads(folder)
    assert leftovers(folder) == []


# ------------------------------------------------------------------------------ hostile files

def npy_bytes(shape, dtype, body=b""):
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                               "shape": shape})
    return out.getvalue() + body


def hostile_npz(path):
    """images.npy claims 10^9 28x28 images; the entry holds a few bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("images.npy", npy_bytes((10**9, 28, 28), np.uint8, b"\0" * 64))
        z.writestr("augmented.npy", npy_bytes((10**9,), np.bool_))
        z.writestr("source_index.npy", npy_bytes((10**9,), np.int32))
        z.writestr("metadata.npy", npy_bytes((), "<U10", b"\0" * 40))


def png_claiming(side):
    """A valid 1x1 grayscale PNG whose header says side x side."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0\0"))
            + chunk(b"IEND", b""))


def image_version_with(work, png=None, metadata=None):
    folder = work / "imageData/apple/versionh"
    folder.mkdir(parents=True)
    (folder / "real_000000.png").write_bytes(png or png_claiming(1))
    (folder / "metadata.json").write_text(metadata if metadata is not None else
                                          json.dumps({"fruit": "apple", "version": "h", "resolution": 28}))


def saved_model(work, name="h", **config):
    from fruitgan.learn.config import TrainConfig
    from fruitgan.models.folder import ModelFolder

    cfg = TrainConfig(dataset_version=TINY_VERSION, model_name=name, epochs=2, batch_size=8, evaluate=False,
                      device="cpu")
    store = ModelFolder.in_workdir(work, name)
    store.write_config({"model_name": name, **cfg.to_dict(), **config})
    return store


def hostile_ndjson(work):
    raw = work / "rawData"
    raw.mkdir()
    (raw / "full_simplified_apple.ndjson").write_bytes(b'{"word": "apple", "drawing": [[["x"' + b" " * 100 + b"\n"
                                                       + b"\xff\xfe not json\n" + b"[1, 2, 3]\n")
    return "rawDataToImage.py", ["--yes", "--fruits", "apple", "--resolution", "28", "--count", "5"]


def hostile_npy(work):
    raw = work / "rawData"
    raw.mkdir()
    (raw / "full_numpy_bitmap_apple.npy").write_bytes(npy_bytes((10**12, 784), np.uint8, b"\0" * 784))
    return "rawDataToImage.py", ["--yes", "--fruits", "apple", "--resolution", "28", "--count", "5",
                                 "--formats", "bitmap"]


def hostile_png(work):
    image_version_with(work, png=png_claiming(5000))
    return "imageToNPZ.py", ["--yes", "--version", "h"]


def hostile_metadata(work):
    image_version_with(work, metadata="[1, 2")
    return "imageToNPZ.py", ["--yes", "--version", "h"]


def hostile_npz_case(work):
    hostile_npz(work / "npzData" / "apple_versionh.npz")
    return "train_gan.py", ["--yes", "--dataset-version", "h", "--model-name", "x", "--device", "cpu"]


def corrupt_checkpoint(work):
    store = saved_model(work)
    store.checkpoints_dir.mkdir(parents=True)
    store.checkpoint_path("latest").write_bytes(b"PK\x03\x04 this is not a checkpoint")
    return "train_gan.py", ["--yes", "--model-name", "h", "--resume"]


def pickled_checkpoint(work):
    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    store = saved_model(work)
    store.checkpoints_dir.mkdir(parents=True)
    torch.save({"x": Boom()}, store.checkpoint_path("latest"))
    return "train_gan.py", ["--yes", "--model-name", "h", "--resume"]


def damaged_generator(work):
    folder = work / "models/model_h"
    saved_model(work)
    (folder / "generator_apple.pt").write_bytes(os.urandom(300))
    return "generate_images.py", ["h", "apple", "--save", str(work / "out.png")]


def checkpoint_claiming(config={}, fruits=None, kept=False):
    """A training checkpoint (latest.pt, or the kept epoch_0001.pt) holding ``config`` and ``fruits`` as given."""
    def make(work):
        from fruitgan.models.checkpoint_files import CHECKPOINT_FORMAT

        store = saved_model(work, fruits=["apple"])
        store.checkpoints_dir.mkdir(parents=True)
        gan_config = {"resolution": 28, **config} if isinstance(config, dict) else config
        payload = {"format": CHECKPOINT_FORMAT, "epoch": 1, "gan_config": gan_config,
                   "fruits": {"apple": {"generator": {}}} if fruits is None else fruits}
        torch.save(payload, store.checkpoint_path(1 if kept else "latest"))
        return "generate_images.py", ["h", "apple", "--checkpoint", "1" if kept else "latest",
                                      "--save", str(work / "out.png")]
    return make


def milestone_claiming(**config):
    """generator_apple.pt (the milestone file) whose saved config claims ``config``."""
    def make(work):
        import gan_model as gm

        saved_model(work, fruits=["apple"])
        payload = {"format": gm.PAYLOAD_FORMAT, "kind": "generator", "state_dict": {},
                   "config": {"resolution": 28, **config}}
        torch.save(payload, work / "models/model_h/generator_apple.pt")
        return "generate_images.py", ["h", "apple", "--checkpoint", "milestone", "--save", str(work / "out.png")]
    return make


# Issue 33: sizes read from a file are checked against the settings' bounds before anything is allocated
# (19.6 TB were once asked for), and a hand-edited structure is one line, not an AttributeError.
ABSURD = {"g_channels": 10**7}
HOSTILE = {"pt-checkpoint-claims-absurd-width": checkpoint_claiming(ABSURD),
           "pt-kept-epoch-claims-absurd-width": checkpoint_claiming(ABSURD, kept=True),
           "pt-milestone-claims-absurd-noise": milestone_claiming(noise_dim=10**9),
           "pt-checkpoint-fruit-is-a-number": checkpoint_claiming(fruits={"apple": 7}),
           "pt-checkpoint-fruits-is-a-number": checkpoint_claiming(fruits=7),
           "pt-checkpoint-config-is-a-number": checkpoint_claiming(7),
           "ndjson": hostile_ndjson, "npy-header-claims-1e12-rows": hostile_npy,
           "png-header-claims-5000px": hostile_png, "metadata-json-invalid": hostile_metadata,
           "npz-header-claims-1e9-images": hostile_npz_case, "pt-checkpoint-corrupt": corrupt_checkpoint,
           "pt-checkpoint-pickle": pickled_checkpoint, "pt-generator-random-bytes": damaged_generator}
DATA_SCRIPTS = ("rawDataToImage.py", "imageToNPZ.py")


def run_in_process(script, argv, capsys):
    import importlib

    from fruitgan.util.user_io import run_main

    module = importlib.import_module(script[:-3])
    capsys.readouterr()
    code = run_main(module.main, argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_files_give_exit_2_and_one_line(case, tiny_workdir, capsys):
    script, args = HOSTILE[case](tiny_workdir)
    if script in DATA_SCRIPTS:     # light scripts: as a user runs them
        r = plain(script, tiny_workdir, *args)
        code, err = r.returncode, r.stderr
    else:                          # torch scripts: in this process, to keep the suite fast
        code, err = run_in_process(script, ["--workdir", str(tiny_workdir), *args], capsys)
    assert code == 2, err
    one_line_error(err)


EDITED_CONFIGS = {
    "invalid-json": '{"epochs": 2,',
    "a-list": "[1, 2, 3]",
    "empty-file": "",
    "a-string": '"hello"',
    "binary": "\udcff",
    "epochs-text": {"epochs": "many"},
    "epochs-null": {"epochs": None},
    "epochs-negative": {"epochs": -3},
    "epochs-float": {"epochs": 1.5},
    "lr-text": {"lr": "fast"},
    "seed-beyond-64-bits": {"seed": 2**70},
    "fruits-a-string": {"fruits": "apple"},
    "dataset-version-number": {"dataset_version": 5},
    "dataset-version-escapes": {"dataset_version": "../../etc"},
    "batch-size-huge": {"batch_size": 10**30},
    "milestones-object": {"milestones": {"a": 1}},
    "model-name-of-another-model": {"model_name": "other"},
}


@pytest.mark.parametrize("variant", list(EDITED_CONFIGS))
def test_hand_edited_config_before_resume_is_one_line(variant, tiny_workdir, capsys):
    store = saved_model(tiny_workdir)
    edit = EDITED_CONFIGS[variant]
    if isinstance(edit, dict):
        doc = json.loads(store.config_path().read_text())
        doc.update(edit)
        store.config_path().write_text(json.dumps(doc))
    else:
        store.config_path().write_bytes(edit.encode("utf-8", "surrogateescape"))
    code, err = run_in_process("train_gan.py", ["--workdir", str(tiny_workdir), "--yes", "--model-name", "h",
                                                "--resume"], capsys)
    assert code == 2, err
    line = one_line_error(err)
    assert "training_config_h.json" in line or "saved settings of model 'h'" in line


def test_seed_beyond_range_is_refused(tiny_workdir):
    import train_gan

    with pytest.raises(SystemExit) as info:
        train_gan.build_parser().parse_args(["--seed", str(2**64)])
    assert info.value.code == 2


def test_degenerate_raw_drawing_is_skipped_without_warnings(tmp_path):
    from fruitgan.data.quickdraw_formats import SKIP_RAW_RANGE

    raw = tmp_path / "rawData"
    raw.mkdir()
    good = {"word": "apple", "key_id": "1", "drawing": [[[0, 10, 20], [0, 15, 5], [0, 1, 2]]]}
    bad = {"word": "apple", "key_id": "2", "drawing": [[[1e308, -1e308], [-1e308, 1e308], [0, 1]]]}
    (raw / "full_raw_apple.ndjson").write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    env = dict(ENV, PYTHONWARNINGS="error")
    r = subprocess.run([sys.executable, str(ROOT / "rawDataToImage.py"), "--workdir", str(tmp_path), "--yes",
                        "--fruits", "apple", "--resolution", "28", "--count", "5", "--workers", "1",
                        "--no-progress", "--version", "d"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Warning" not in r.stderr
    meta = json.loads((tmp_path / "imageData/apple/versiond/metadata.json").read_text())
    assert meta["real_count"] == 1 and meta["skipped"] == {SKIP_RAW_RANGE: 1}


# ------------------------------------------------------------------------------ prompts check their answers

def test_prompts_refuse_an_existing_default_name_and_an_absent_gpu_at_once(tiny_workdir, monkeypatch, capsys,
                                                                          one_thread):
    import train_gan
    from fruitgan.util.user_io import run_main

    saved_model(tiny_workdir, "v1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    # version (Enter: newest), model name (Enter: v1 exists -> asked again), epochs, batch, lr,
    # description, device (cuda refused -> asked again)
    answers = "\n".join(["", "", "p2", "1", "8", "", "", "cuda", "cpu"]) + "\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(answers))
    code = run_main(train_gan.main, ["--workdir", str(tiny_workdir), "--no-eval", "--milestones", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "the default 'v1' cannot be used: model 'v1' already exists" in out
    assert "this machine has no CUDA GPU" in out
    assert (tiny_workdir / "models/model_p2/info/training_config_p2.json").exists()


def test_with_yes_a_default_name_that_exists_is_one_line(tiny_workdir, capsys):
    saved_model(tiny_workdir, "v1")
    code, err = run_in_process("train_gan.py", ["--workdir", str(tiny_workdir), "--yes", "--dataset-version",
                                                TINY_VERSION], capsys)
    assert code == 2
    assert "--model-name" in one_line_error(err)


# ------------------------------------------------------------------------------ special files (issue 33)
# Each case puts a FIFO, folder or symlink loop where a regular file belongs. The run must refuse it in one
# line naming the file, never wait on it: the subprocess timeout turns a hang into a failure, not a stuck suite.
HANG_LIMIT = 120


def special(path, kind):
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        path.symlink_to(path.name)     # a link to itself: ELOOP


def raw_special(kind):
    def make(work):
        shutil.copytree(SAMPLE, work / "rawData" / "sample")   # the sample must not stand in, silently
        special(work / "rawData" / "apple.ndjson", kind)
        return ("rawDataToImage.py", ["--yes", "--fruits", "apple", "--resolution", "28", "--count", "5"],
                "rawData/apple.ndjson")
    return make


def real_png(side=28):
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (side, side)).save(out, format="PNG")
    return out.getvalue()


def png_fifo(work):
    image_version_with(work, png=real_png())
    special(work / "imageData/apple/versionh/real_000001.png", "fifo")
    return "imageToNPZ.py", ["--yes", "--version", "h"], "real_000001.png"


def image_lock_fifo(work):
    shutil.copytree(SAMPLE, work / "rawData" / "sample")
    special(work / "imageData" / ".versionh.lock", "fifo")
    return "rawDataToImage.py", [*CONVERT, "--version", "h"], ".versionh.lock"


def npz_lock_fifo(work):
    image_version_with(work, png=real_png())
    special(work / "npzData" / ".versionh.lock", "fifo")
    return "imageToNPZ.py", ["--yes", "--version", "h"], ".versionh.lock"


def model_lock_fifo(work):
    saved_model(work)
    special(work / "models" / ".model_h.lock", "fifo")
    return "train_gan.py", ["--yes", "--model-name", "h", "--resume"], ".model_h.lock"


def npz_fifo(work):
    (work / "npzData" / f"apple_version{TINY_VERSION}.npz").unlink()
    special(work / "npzData" / f"apple_version{TINY_VERSION}.npz", "fifo")
    return ("train_gan.py", ["--yes", "--dataset-version", TINY_VERSION, "--model-name", "x", "--device", "cpu"],
            f"apple_version{TINY_VERSION}.npz")


SPECIAL = {"rawData-fifo": raw_special("fifo"), "rawData-folder": raw_special("folder"),
           "rawData-symlink-loop": raw_special("loop"), "png-fifo": png_fifo, "image-lock-fifo": image_lock_fifo,
           "npz-lock-fifo": npz_lock_fifo, "model-lock-fifo-on-resume": model_lock_fifo, "npz-fifo": npz_fifo}


@pytest.mark.parametrize("case", list(SPECIAL))
def test_special_files_are_refused_in_one_line_without_waiting(case, tiny_workdir):
    if case.startswith("rawData") or case == "image-lock-fifo":
        shutil.rmtree(tiny_workdir / "npzData")
    script, args, name = SPECIAL[case](tiny_workdir)
    r = subprocess.run([sys.executable, str(ROOT / script), "--workdir", str(tiny_workdir), *args], env=ENV,
                       cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=HANG_LIMIT)
    assert r.returncode == 2, r.stderr
    line = one_line_error(r.stderr)
    assert name in line and "not a regular file" in line and ("remove it" in line or "delete it" in line
                                                              or "recreate it" in line), line


# ------------------------------------------------------------------------------ Ctrl+C (issue 33)

@pytest.mark.parametrize("script, args", [("rawDataToImage.py", [*CONVERT, "--version", "i"]),
                                          ("imageToNPZ.py", ["--yes", "--version", "ref"])],
                         ids=["conversion", "packing"])
@pytest.mark.parametrize("inherited", ["default", "ignored"])
def test_ctrl_c_during_a_run_exits_130_and_the_same_command_then_finishes(converted, tmp_path, script, args,
                                                                            inherited):
    """Paused at its first file write (holding its lock), the run gets SIGINT. 'ignored': started the way a
    shell starts a background job, with SIGINT ignored, which is how a conversion once ended with exit 0."""
    base, _ = converted
    work = tmp_path / "w"
    shutil.copytree(base / "rawData", work / "rawData")
    shutil.copytree(base / "imageData" / "apple" / "versionref", work / "imageData" / "apple" / "versionref")
    go = tmp_path / "go"
    env = dict(ENV, FAULT_ROOT=str(work), FAULT_KILL_AT="0", FAULT_PAUSE_UNTIL=str(go))
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if inherited == "ignored" else None
    proc = subprocess.Popen([sys.executable, "-c", HOOK, str(ROOT / script), "--workdir", str(work), *args],
                            env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=ignore)
    try:
        wait_for(f"{go}.reached", proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=HANG_LIMIT)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("interrupted; files already written are complete")
    assert "Traceback" not in err
    r = plain(script, work, *args)
    assert r.returncode == 0, r.stderr
    assert leftovers(work) == []


# ------------------------------------------------------------------------------ unreadable folders (issue 33)
# The suite runs as root in CI, where chmod cannot make a folder unreadable: the listing is made to fail
# the way it does for a user without permission (PermissionError from the kernel).

def refuse_listing(monkeypatch, folder):
    real_scandir, real_iterdir = os.scandir, Path.iterdir

    def scandir(path="."):
        if Path(path) == folder:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    def iterdir(self):
        if self == folder:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(Path, "iterdir", iterdir)


def test_an_unreadable_fruit_folder_is_skipped_and_said_the_rest_listed(converted, tmp_path, monkeypatch, capsys):
    from fruitgan.data.image_version import scan_image_versions

    base, _ = converted
    work = tmp_path / "w"
    for fruit in ("apple", "banana"):
        shutil.copytree(base / "imageData" / fruit / "versionref", work / "imageData" / fruit / "versionref")
    refuse_listing(monkeypatch, work / "imageData" / "banana")
    capsys.readouterr()
    found = scan_image_versions(work)
    assert [(f.fruit, f.status) for f in found] == [("apple", "complete")]
    said = capsys.readouterr().err
    assert said.count("\n") == 1 and "skipping" in said and str(work / "imageData" / "banana") in said
    refuse_listing(monkeypatch, work / "imageData" / "apple" / "versionref")
    assert [f.status.startswith("unreadable") for f in scan_image_versions(work)] == [True]


@pytest.mark.parametrize("folder, script, args", [
    ("rawData", "rawDataToImage.py", ["--yes", "--fruits", "apple", "--count", "3", "--resolution", "28"]),
    ("imageData", "imageToNPZ.py", ["--yes"])])
def test_an_unreadable_data_folder_is_one_line_naming_it(converted, tmp_path, monkeypatch, capsys, folder, script,
                                                         args):
    base, _ = converted
    work = tmp_path / "w"
    shutil.copytree(base / "rawData", work / "rawData")
    shutil.copytree(base / "imageData" / "apple" / "versionref", work / "imageData" / "apple" / "versionref")
    refuse_listing(monkeypatch, work / folder)
    code, err = run_in_process(script, ["--workdir", str(work), *args], capsys)
    assert code == 2
    line = one_line_error(err)
    assert str(work / folder) in line and "permission" in line.lower()


def unreadable(monkeypatch, folder):
    """Reading anything inside ``folder`` (listing it, opening a file in it) fails as without permission."""
    import builtins

    def inside(path):
        try:
            return Path(os.fspath(path)).resolve().is_relative_to(folder.resolve())
        except TypeError:      # a file descriptor
            return False

    def guard(real, method=False):
        def call(*args, **kwargs):
            path = args[0] if args else kwargs.get("path", ".")
            if inside(path):
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real(*args, **kwargs)
        return call

    for owner, name in ((os, "scandir"), (os, "listdir"), (os, "open"), (builtins, "open"), (io, "open"),
                        (Path, "iterdir"), (Path, "read_text"), (Path, "read_bytes"), (Path, "open")):
        monkeypatch.setattr(owner, name, guard(getattr(owner, name)))


def tiny_generator_file(work, name, fruit="apple"):
    """A model folder whose milestone generator is a real (untrained) tiny network: drawing without training."""
    import gan_model as gm

    saved_model(work, name, fruits=[fruit], g_channels=16, d_channels=8)
    cfg = gm.GANConfig(resolution=28, g_channels=16, d_channels=8)
    torch.save(gm.network_payload(gm.Generator(cfg), cfg, "generator"),
               work / "models" / f"model_{name}" / f"generator_{fruit}.pt")


# The next two cases are generate_images.py's (the helpers it uses: fruitgan/util/safe_files.py).

def test_a_model_whose_info_folder_is_unreadable_is_skipped_in_the_table_and_said(tiny_workdir, monkeypatch,
                                                                                   capsys):
    tiny_generator_file(tiny_workdir, "good")
    tiny_generator_file(tiny_workdir, "bad")
    import generate_images
    from fruitgan.util.user_io import run_main

    unreadable(monkeypatch, tiny_workdir / "models" / "model_bad" / "info")
    capsys.readouterr()
    code = run_main(generate_images.main, ["--workdir", str(tiny_workdir)])
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = [line.split()[0] for line in out.splitlines() if line.strip()]
    assert "good" in rows                                   # the rest is shown ...
    said = [line for line in (out + err).splitlines() if "bad" in line]
    assert any("info" in line and ("unreadable" in line or "ermission" in line) for line in said), out + err


def test_a_killed_outdir_writer_leaves_nothing_the_next_run_keeps(tiny_workdir, capsys):
    from fruitgan.util.safe_files import owner_tag

    tiny_generator_file(tiny_workdir, "h")
    outdir = tiny_workdir / "fakes"
    outdir.mkdir()
    dead = subprocess.run([sys.executable, "-c", "from fruitgan.util import safe_files; print(safe_files.owner_tag())"],
                          capture_output=True, text=True, cwd=ROOT).stdout.strip()   # a process that has exited
    assert dead and dead != owner_tag()
    stale = outdir / f".h_apple_0.png.{dead}.x1y2.tmp"
    stale.write_bytes(b"half a png")
    code, err = run_in_process("generate_images.py", ["--workdir", str(tiny_workdir), "h", "apple", "--checkpoint",
                                                      "milestone", "--num-images", "2", "--outdir", str(outdir)],
                               capsys)
    assert code == 0, err
    assert not stale.exists() and len(list(outdir.glob("*.png"))) == 2


# ------------------------------------------------------------------------------ refused flags (issue 28, 33)
# Every script's parser is fruitgan.util.user_io.ArgumentParser: a refused flag is one line naming it.
@pytest.mark.parametrize("script, args, flag", [
    ("rawDataToImage.py", ["--resolution", "30"], "--resolution"), ("imageToNPZ.py", ["--bogus"], "--bogus"),
    ("generate_images.py", ["--num-images", "0"], "--num-images"), ("train_gan.py", ["--lr", "1.0"], "--lr"),
    ("train_gan.py", ["--beta2", "1"], "--beta2"), ("spot_the_fake.py", ["--port", "80"], "--port"),
    ("run_pipeline.py", ["--bogus"], "--bogus"), ("make_report.py", ["--bogus"], "--bogus")])
def test_a_refused_flag_is_one_line_naming_it(script, args, flag, tmp_path):
    r = plain(script, tmp_path, *args)
    assert r.returncode == 2
    assert flag in one_line_error(r.stderr)


def test_overwrite_on_a_read_only_file_system_is_one_line(trained, tiny_workdir, monkeypatch, capsys, one_thread):
    """--overwrite must delete the old folder first: on a read-only file system that is one line, and the old
    folder is still whole (EROFS is raised by every way of removing or replacing a file). The old folder: a copy
    of the finished run 'ref' (TRAIN), trained once for this module."""
    import errno
    import shutil

    shutil.copytree(trained[0] / "models", tiny_workdir / "models")
    before = sorted(p.name for p in (tiny_workdir / "models" / "model_ref").rglob("*"))
    assert before

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")
    for mod, name in ((shutil, "rmtree"), (shutil, "move"), (os, "replace"), (os, "rename")):
        monkeypatch.setattr(mod, name, read_only)
    code, err = run_in_process("train_gan.py", ["--workdir", str(tiny_workdir), *TRAIN, "--model-name", "ref",
                                                "--overwrite"], capsys)
    monkeypatch.undo()
    assert code == 2 and "read-only" in one_line_error(err).lower()
    assert sorted(p.name for p in (tiny_workdir / "models" / "model_ref").rglob("*")) == before
