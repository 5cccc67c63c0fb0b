"""generate_images.py when things go wrong: hand-edited checkpoints, an unreadable model folder, a writer killed
with kill -9, Ctrl+C. Each is one line on stderr (exit 2, or 130 for Ctrl+C), never a traceback.

The model folders are built by tests/test_model_store (random weights) and then damaged here by hand.
"""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import generate_images as gi
from conftest import ROOT
from fruitgan.util.safe_files import owner_tag
from fruitgan.util.user_io import run_main
from test_model_store import build_model, write_latest


@pytest.fixture
def model(tmp_path, monkeypatch):
    """models/model_v1 (apple, banana) with a latest.pt, no display."""
    monkeypatch.delenv("DISPLAY", raising=False)
    build_model(tmp_path, "v1", fruits=("apple", "banana"))
    write_latest(tmp_path, "v1", ("apple", "banana"), epoch=9)
    return tmp_path


def one_line(capsys, code, expected_code=2) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == expected_code and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def edit(path: Path, change) -> None:
    """Load a torch file, let ``change`` alter it (returning the new content), save it back."""
    torch.save(change(torch.load(path, weights_only=True)), path)


def set_in(keys, value):
    def change(payload):
        target = payload
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
        return payload
    return change


# (file under models/model_v1, how it is edited, --checkpoint that reads it)
HAND_EDITED = {
    "latest-fruit-is-a-number": ("checkpoints/latest.pt", set_in(["fruits", "apple"], 5), "latest"),
    "latest-epoch-is-text": ("checkpoints/latest.pt", set_in(["epoch"], "nine"), "latest"),
    "latest-weights-are-a-number": ("checkpoints/latest.pt", set_in(["fruits", "apple", "ema"], 7), "latest"),
    "latest-config-is-a-number": ("checkpoints/latest.pt", set_in(["gan_config"], 3), "latest"),
    "latest-is-a-number": ("checkpoints/latest.pt", lambda payload: 5, "latest"),
    "generator-weights-are-a-number": ("generator_apple.pt", set_in(["state_dict"], 5), "milestone"),
    "generator-is-a-number": ("generator_apple.pt", lambda payload: 5, "milestone"),
    "best-average-is-a-number": ("best/generator_apple.pt", set_in(["ema_state_dict"], 5), "best"),
    "kept-fruits-is-a-number": ("checkpoints/epoch_0002.pt", set_in(["fruits"], 5), "2"),
    "kept-resolution-huge": ("checkpoints/epoch_0002.pt", set_in(["gan_config", "resolution"], 10**9), "2"),
}


@pytest.mark.parametrize("case", list(HAND_EDITED))
def test_a_hand_edited_checkpoint_is_one_line(model, case, capsys):
    file, change, checkpoint = HAND_EDITED[case]
    edit(model / "models" / "model_v1" / file, change)
    code = run_main(gi.main, ["--workdir", str(model), "v1", "apple", "--num-images", "2", "--seed", "0",
                              "--checkpoint", checkpoint, "--save", str(model / "g.png")])
    assert one_line(capsys, code).startswith("error: ")
    assert not (model / "g.png").exists()


def without_file_override(cmd):
    """``cmd`` run so that file permissions bind it: as root, without the capabilities that bypass them."""
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *cmd] if os.geteuid() == 0 else cmd


def test_a_model_whose_info_cannot_be_read_is_left_out_in_one_line(model):
    build_model(model, "v2", fruits=("pear",))
    info = model / "models" / "model_v2" / "info"
    info.chmod(0)
    try:
        run = lambda *args: subprocess.run(without_file_override([sys.executable, str(ROOT / "generate_images.py"),
                                                                  "--workdir", str(model), *args]),
                                           capture_output=True, text=True, timeout=300, cwd=ROOT)
        listing, described = run(), run("v2")
        drawn = run("v2", "pear", "--num-images", "2", "--save", str(model / "p.png"))
    finally:
        info.chmod(0o755)
    assert described.returncode == 2 and described.stderr.count("\n") == 1, described.stderr
    assert "permission denied" in described.stderr and "Traceback" not in described.stderr
    # The weights can be read: the drawing is made, and the line of figures says why there are none.
    assert drawn.returncode == 0 and (model / "p.png").is_file(), drawn.stderr
    assert "quality of this checkpoint: its records cannot be read" in drawn.stdout
    assert listing.returncode == 0 and "Traceback" not in listing.stderr, listing.stderr
    lines = listing.stdout.splitlines()
    assert [line.split()[0] for line in lines if line.startswith(("v1 ", "v2 "))] == ["v1", "v1", "v1"]
    notes = [line for line in lines if line.startswith("  v2: ")]
    assert len(notes) == 1 and "Permission denied" in notes[0], listing.stdout


def test_the_next_run_removes_what_a_killed_writer_left(model, capsys):
    outdir = model / "each"
    outdir.mkdir()
    # A writer killed with kill -9 while it wrote: its temp file, named as safe_files names them, stays behind.
    leave = ("import os, signal, sys, tempfile; from fruitgan.util.safe_files import owner_tag; "
             "tempfile.mkstemp(prefix=f'.generated_v1_apple_seed1_0001.png.{owner_tag()}.', suffix='.tmp', "
             "dir=sys.argv[1]); os.kill(os.getpid(), signal.SIGKILL)")
    killed = subprocess.run([sys.executable, "-c", leave, str(outdir)], cwd=ROOT, timeout=60)
    assert killed.returncode == -signal.SIGKILL
    (left,) = outdir.iterdir()
    alive = outdir / f".other.png.{owner_tag()}.x.tmp"            # a live writer's (this process): kept
    alive.touch()
    assert gi.main(["--workdir", str(model), "v1", "apple", "--num-images", "2", "--seed", "1", "--outdir",
                    str(outdir)]) == 0
    assert f"removed 1 temporary file(s) a killed run left in {outdir}" in capsys.readouterr().out
    assert not left.exists() and alive.exists() and len(list(outdir.glob("*.png"))) == 2


def test_ctrl_c_exits_130_in_one_line_and_keeps_whole_files(model, capsys, monkeypatch):
    saved, real_save = [], Image.Image.save

    def interrupted_on_the_third(image, fp, *args, **kwargs):
        if len(saved) == 2:
            raise KeyboardInterrupt
        saved.append(fp)
        return real_save(image, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", interrupted_on_the_third)
    outdir = model / "each"
    code = run_main(gi.main, ["--workdir", str(model), "v1", "apple", "--num-images", "5", "--seed", "1",
                              "--outdir", str(outdir)])
    assert one_line(capsys, code, expected_code=130) == "interrupted; files already written are complete"
    monkeypatch.undo()
    files = sorted(outdir.iterdir())
    assert [f.name for f in files] == [f"generated_v1_apple_seed1_000{i}.png" for i in (1, 2)]   # no temp file
    assert all(Image.open(f).size == (28, 28) for f in files)


def test_a_hand_edited_index_entry_leaves_out_that_model_only(model, capsys):
    import json

    build_model(model, "v2", fruits=("pear",))
    assert gi.main(["--workdir", str(model)]) == 0                          # builds models/models_index.json
    index = model / "models" / "models_index.json"
    doc = json.loads(index.read_text())
    doc["models"]["v2"]["quality"] = 5
    index.write_text(json.dumps(doc))
    capsys.readouterr()
    assert run_main(gi.main, ["--workdir", str(model)]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines() if line.startswith(("v1 ", "v2 "))] == ["v1"] * 3
    assert "  v2: not listed (a damaged index entry: AttributeError)" in out.splitlines()


@pytest.mark.parametrize("case", list(HAND_EDITED))
def test_the_loader_itself_refuses_a_hand_edited_checkpoint_with_a_user_error(model, case):
    """Not only generate_images' safety net: fruitgan.models.loading (also used by spot_the_fake.py and the report)
    turns every hand-edited structure into a one-line UserError."""
    from fruitgan.models import loading
    from fruitgan.util.user_io import UserError

    file, change, checkpoint = HAND_EDITED[case]
    edit(model / "models" / "model_v1" / file, change)
    with pytest.raises(UserError) as caught:
        loading.load_generator(model, "v1", "apple", loading.parse_checkpoint(checkpoint))
    assert "\n" not in str(caught.value)
