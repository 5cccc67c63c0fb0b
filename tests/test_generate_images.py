"""generate_images.py: listing, deterministic grids, interpolation, per-image files, errors, --classify.

Models are built with tests/test_model_store.build_model (gan_model's real networks at 28 px, random
weights) in the layout gan_trainer.py writes; --classify runs on the real 'tiny' dataset of conftest.
"""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import gan_model
import generate_images as gi
from fruitgan.models import index as models_index, loading
from fruitgan.util import pictures
from conftest import TINY_VERSION, run_script
from test_model_store import build_model
from fruitgan.util.user_io import UserError


@pytest.fixture
def headless(monkeypatch):
    """No display: the grid must be saved, never shown."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)


@pytest.fixture
def modeldir(tmp_path, headless):
    build_model(tmp_path, "v1", fruits=("apple", "banana"))
    return tmp_path


def run(workdir, *args):
    return gi.main(["--workdir", str(workdir), *map(str, args)])


def test_same_seed_same_bytes_other_seed_other_images(modeldir, tmp_path):
    a, b, c = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    assert run(modeldir, "v1", "apple", "--num-images", 9, "--seed", 5, "--save", a) == 0
    assert run(modeldir, "v1", "apple", "--num-images", 9, "--seed", 5, "--save", b) == 0
    assert run(modeldir, "v1", "apple", "--num-images", 9, "--seed", 6, "--save", c) == 0
    assert a.read_bytes() == b.read_bytes()
    assert not np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(c)))
    grid = np.asarray(Image.open(a))
    tile = 28 * gi.math.ceil(gi.MIN_TILE_PX / 28)
    assert grid.shape[0] >= 3 * tile and grid.shape[0] == grid.shape[1]     # 3 x 3 enlarged tiles


def test_grid_shows_the_generators_images(modeldir):
    g, _ = loading.load_generator(modeldir, "v1", "banana")
    noise = gi.sample_noise(4, 100, seed=11)
    pixels = pictures.to_uint8(gan_model.generate(g, noise))
    with torch.no_grad():
        direct = ((g(noise)[:, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    assert np.array_equal(pixels, direct)
    grid = np.asarray(pictures.image_grid(pixels, 2, gi.GRID_PAD, gi.GRID_PAD_VALUE, gi.MIN_TILE_PX))
    scale = gi.math.ceil(gi.MIN_TILE_PX / 28)
    top_left = grid[gi.GRID_PAD * scale:(gi.GRID_PAD + 28) * scale:scale, gi.GRID_PAD * scale:(gi.GRID_PAD + 28) * scale:scale]
    assert np.array_equal(top_left, pixels[0])


def test_headless_default_saves_under_outputs_and_prints_path(modeldir, capsys):
    assert run(modeldir, "v1", "apple", "--num-images", 4, "--seed", 3) == 0
    path = modeldir / "outputs" / "generated_v1_apple_seed3.png"
    assert path.is_file() and str(path) in capsys.readouterr().out
    assert run(modeldir, "v1", "apple", "--num-images", 4, "--seed", 3, "--checkpoint", "best") == 0
    assert (modeldir / "outputs" / "generated_v1_apple_seed3_best.png").is_file()


def test_unreachable_display_falls_back_to_saving(modeldir, monkeypatch, capsys):
    monkeypatch.setenv("DISPLAY", ":4321")             # no X server there
    monkeypatch.setenv("MPLBACKEND", "TkAgg")
    assert run(modeldir, "v1", "apple", "--num-images", 4, "--seed", 1) == 0
    assert (modeldir / "outputs" / "generated_v1_apple_seed1.png").is_file()
    monkeypatch.setenv("MPLBACKEND", "Agg")             # a file backend: never a window
    assert gi.show_in_window(Image.new("L", (4, 4)), "x") is False


def test_random_seed_is_printed_and_reproduces(modeldir, tmp_path, capsys):
    assert run(modeldir, "v1", "apple", "--num-images", 4, "--save", tmp_path / "r.png") == 0
    out = capsys.readouterr().out
    seed = int(out.split("use --seed ")[1].split()[0])
    assert run(modeldir, "v1", "apple", "--num-images", 4, "--seed", seed, "--save", tmp_path / "s.png") == 0
    assert (tmp_path / "r.png").read_bytes() == (tmp_path / "s.png").read_bytes()


def test_slerp_ends_and_norm():
    gen = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(5, 100, generator=gen), torch.randn(5, 100, generator=gen)
    assert torch.equal(gi.slerp(z0, z1, 0.0), z0) and torch.equal(gi.slerp(z0, z1, 1.0), z1)
    mid = gi.slerp(z0, z1 * (z0.norm(dim=1, keepdim=True) / z1.norm(dim=1, keepdim=True)), 0.5)
    assert torch.allclose(mid.norm(dim=1), z0.norm(dim=1), rtol=1e-5)     # stays on the sphere, unlike a line
    assert torch.allclose(gi.slerp(z0, z0, 0.3), z0, atol=1e-6)              # parallel ends: no NaN


def test_interpolation_walks_from_g_z0_to_g_z1_in_the_frames_asked_for(modeldir):
    g, _ = loading.load_generator(modeldir, "v1", "apple")
    noise = gi.interpolation_noise(5, 100, seed=9)
    ends = gi.sample_noise(2, 100, seed=9)
    assert noise.shape == (5, 100) and torch.equal(noise[0], ends[0]) and torch.equal(noise[-1], ends[1])
    angle = lambda a, b: torch.acos(torch.nn.functional.cosine_similarity(a, b, dim=0).clamp(-1, 1))
    steps = [float(angle(noise[i], noise[i + 1])) for i in range(4)]
    # Along the arc in even turns (a straight line would turn 18, 27, 27, 18 degrees between 90-degree ends).
    assert max(steps) - min(steps) < 0.01 * max(steps) and abs(sum(steps) - float(angle(ends[0], ends[1]))) < 1e-4
    frames = gan_model.generate(g, noise)
    assert torch.allclose(frames[0], gan_model.generate(g, ends[:1])[0], atol=1e-5)
    assert torch.allclose(frames[-1], gan_model.generate(g, ends[1:])[0], atol=1e-5)
    assert not torch.allclose(frames[0], frames[2], atol=1e-3)


def test_interpolate_num_images_10_makes_10_frames_of_one_transition(modeldir, tmp_path):
    out, each = tmp_path / "walk.png", tmp_path / "frames"
    assert run(modeldir, "v1", "banana", "--interpolate", "--num-images", 10, "--seed", 0, "--save", out,
               "--outdir", each) == 0
    grid = np.asarray(Image.open(out))
    tile = 28 * gi.math.ceil(gi.MIN_TILE_PX / 28)
    assert 10 * tile < grid.shape[1] < 11 * tile and tile < grid.shape[0] < 2 * tile        # one row of 10
    files = sorted(each.glob("*.png"))
    g, _ = loading.load_generator(modeldir, "v1", "banana")
    walk = pictures.to_uint8(gan_model.generate(g, gi.interpolation_noise(10, 100, seed=0)))
    assert len(files) == 10 and files[0].name == "generated_v1_banana_seed0_interpolation_0001.png"
    assert all(np.array_equal(np.asarray(Image.open(f)), frame) for f, frame in zip(files, walk))
    help_text = " ".join(gi.build_parser().format_help().split())
    assert "spherical interpolation" in help_text and "--steps" not in help_text


def test_outdir_writes_one_png_per_image(modeldir, tmp_path):
    outdir = tmp_path / "each"
    assert run(modeldir, "v1", "banana", "--num-images", 5, "--seed", 2, "--outdir", outdir, "--checkpoint", 2) == 0
    files = sorted(outdir.glob("*.png"))
    assert [f.name for f in files] == [f"generated_v1_banana_seed2_epoch2_{i:04d}.png" for i in range(1, 6)]
    assert all(Image.open(f).size == (28, 28) and Image.open(f).mode == "L" for f in files)
    assert not (modeldir / "outputs").exists()                              # no grid without --save


def test_checkpoint_n_of_a_torchrun_model_reads_the_rank_file_holding_the_fruit(tmp_path, headless, capsys):
    """Under torchrun epoch N is kept as epoch_NNNN_rank<r>of<w>.pt per rank; --checkpoint N draws from the right one."""
    written = build_model(tmp_path, "d2", fruits=("apple", "banana", "pear"), world=2)
    outdir = tmp_path / "each"
    assert run(tmp_path, "d2", "banana", "--num-images", 3, "--seed", 4, "--outdir", outdir, "--checkpoint", 4) == 0
    assert "epoch-4 checkpoint (epoch 4)" in capsys.readouterr().out
    expected = pictures.to_uint8(gan_model.generate(written[("banana", 4)], gi.sample_noise(3, 100, seed=4)))
    files = sorted(outdir.glob("*.png"))
    assert len(files) == 3
    for file, pixels in zip(files, expected):
        assert np.array_equal(np.asarray(Image.open(file)), pixels)


def test_listing(tmp_path, capsys, headless):
    assert run(tmp_path) == 0
    assert "No trained models" in capsys.readouterr().out
    build_model(tmp_path, "v1", fruits=("apple", "banana"))
    build_model(tmp_path, "night2", fruits=("pear",), dataset_version="big", summary=False, best=False)
    assert run(tmp_path) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == list(gi.MODEL_HEADER)
    rows = [line.split() for line in lines if line.startswith(("v1 ", "night2 "))]
    assert rows[0][3:] == ["big", "28", "pear", "-/10", "unknown"]                            # no summary
    assert rows[1][1:] == ["2025-01-02", "03:04", "1", "28", "apple,banana", "4/10", "interrupted"]
    assert lines[lines.index("") + 1].split() == list(gi.QUALITY_HEADER)                    # then one row per fruit
    assert rows[2][1:] == ["pear", "-"] + ["-"] * 7                                         # nothing measured
    assert rows[3][1:] == ["apple", "best", "(epoch", "2)", "-", "-", "-", "-", "50%", "3.00", "0.40"]
    assert rows[4][1:3] == ["banana", "best"] and len(rows) == 5
    explained = set(gi.MODEL_HEADER + gi.QUALITY_HEADER) - {"model", "fruit", "fruits"}
    assert all(f"{column}: " in out.split(gi.QUALITY_HEADER[-1], 1)[1] for column in explained)   # a legend below
    assert run(tmp_path, "v1") == 0
    out = capsys.readouterr().out
    assert "apple   last milestone (epoch 4)" in out and "apple   best (epoch 2)" in out
    assert "kept checkpoints (--checkpoint N): 2, 4" in out
    assert "validation" not in out and "test part" not in out and "score" not in out       # a run without a split


@pytest.mark.parametrize("args, message", [
    (["v9", "apple"], r"no model 'v9' \(models there are: v1\)"),
    (["v1", "grapes"], r"no 'grapes' generator \(fruits there are: apple, banana\)"),
    (["../models", "apple"], "invalid model name.*models there are: v1"),
    (["v1", "apple", "--checkpoint", "7"], r"no checkpoint of epoch 7 .*latest, best, 2, 4"),
    (["v1", "apple", "--checkpoint", "soon"], "--checkpoint: checkpoint 'soon' is not"),
    (["v1", "apple", "--save", "grid.jpg"], r"--save: grid.jpg should be a .png"),
    (["v1", "apple", "--interpolate", "--num-images", "1"], "a transition needs at least 2 frames"),
    (["v1", "apple", "--interpolate", "--num-images", "2000", "--outdir", "x"], "a transition .*at most 1024"),
])
def test_bad_input_is_one_clear_line(modeldir, args, message):
    with pytest.raises(UserError, match=message):
        run(modeldir, *args)


@pytest.mark.parametrize("args", [["--num-images", "0"], ["--num-images", "many"], ["--seed", "-1"], ["--steps", "8"]])
def test_bad_numbers_are_refused(modeldir, args, capsys):
    with pytest.raises(SystemExit) as exc:
        run(modeldir, "v1", "apple", *args)
    assert exc.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()                          # one line, no usage block
    assert line.startswith("error: ") and args[0] in line


def test_script_runs_headless_and_errors_without_traceback(modeldir):
    r = run_script("generate_images.py", "--workdir", str(modeldir), "v1", "apple", "--num-images", "4", "--seed", "8")
    assert r.returncode == 0, r.stderr
    assert (modeldir / "outputs" / "generated_v1_apple_seed8.png").is_file()
    r = run_script("generate_images.py", "--workdir", str(modeldir), "v1", "kiwi")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == "error: model 'v1' has no 'kiwi' generator (fruits there are: apple, banana)"


def test_classify_uses_the_dataset_versions_classifier(tiny_workdir, capsys, headless):
    build_model(tiny_workdir, "t", fruits=("apple", "banana", "pear"), dataset_version=TINY_VERSION)
    assert run(tiny_workdir, "t", "pear", "--num-images", 6, "--seed", 1, "--classify") == 0
    out = capsys.readouterr().out
    assert (tiny_workdir / "models" / "evaluators" / f"classifier_version{TINY_VERSION}_28px.pt").is_file()
    image_lines = [line for line in out.splitlines() if line.strip().startswith("image")]
    assert len(image_lines) == 6 and all(line.split()[2] in ("apple", "banana", "pear") for line in image_lines)
    assert "recognised as pear: " in out and " of 6 (" in out and "predicted: " in out
    # The second time the cached classifier answers (no training message).
    assert run(tiny_workdir, "t", "pear", "--num-images", 2, "--seed", 1, "--classify") == 0
    assert "training the quality classifier" not in capsys.readouterr().out


def test_classify_without_dataset_says_what_to_build(modeldir):
    with pytest.raises(UserError, match="--classify needs dataset version 1 of the model: no dataset version '1'"):
        run(modeldir, "v1", "apple", "--num-images", 2, "--seed", 0, "--classify")


def test_listing_survives_odd_entries_and_notes_them(tmp_path, capsys, headless):
    build_model(tmp_path, "v1", fruits=("apple", "banana"))
    root = tmp_path / "models"
    (root / "model_x").write_text("not a folder")
    (root / "model_bad name").mkdir()
    (root / "model_y" / "info").mkdir(parents=True)
    (root / "model_y" / "info" / "training_summary_y.json").write_text("{half")
    models_index.index_path(tmp_path).write_text("[not an index")
    assert run(tmp_path) == 0
    lines = capsys.readouterr().out.splitlines()
    assert next(line for line in lines if line.startswith("v1 ")).split()[6] == "4/10"
    assert next(line for line in lines if line.startswith("y ")).split()[-1] == "unknown"   # its status
    assert "  y: info/training_config_y.json is missing; info/training_summary_y.json is unreadable" in lines
    assert "  models/model_x: skipped (a file, not a model folder)" in lines
    assert any(line.startswith("  models/model_bad name: skipped (not a valid model name") for line in lines)
    assert models_index.read_index(tmp_path, rebuild_if_stale=False)["models"].keys() == {"v1", "y"}   # rebuilt


def test_checkpoint_latest_draws_the_last_epoch_and_milestone_the_generator_file(modeldir, tmp_path, capsys):
    from test_model_store import write_latest

    latest = write_latest(modeldir, "v1", ("apple", "banana"), epoch=9)
    noise = gi.sample_noise(3, 100, seed=1)
    for checkpoint, expected in (("latest", latest[("apple", "ema")]),
                                 ("milestone", loading.load_generator(modeldir, "v1", "apple", "milestone")[0])):
        outdir = tmp_path / checkpoint
        assert run(modeldir, "v1", "apple", "--num-images", 3, "--seed", 1, "--outdir", outdir,
                   "--checkpoint", checkpoint) == 0
        pixels = pictures.to_uint8(gan_model.generate(expected, noise))
        files = sorted(outdir.glob("*.png"))
        assert [np.asarray(Image.open(f)).tolist() for f in files] == [p.tolist() for p in pixels]
    out = capsys.readouterr().out
    assert "latest checkpoint (epoch 9, moving-average weights)" in out and "milestone checkpoint (epoch 4)" in out
    assert sorted((tmp_path / "milestone").glob("*.png"))[0].name == "generated_v1_apple_seed1_milestone_0001.png"


def test_num_images_beyond_a_grid_writes_files_in_batches(modeldir, tmp_path):
    outdir = tmp_path / "many"
    assert run(modeldir, "v1", "apple", "--num-images", 300, "--seed", 3, "--outdir", outdir) == 0
    files = sorted(outdir.glob("*.png"))
    assert len(files) == 300 and files[-1].name == "generated_v1_apple_seed3_0300.png"
    # The batches are slices of one seeded stream: the files are the images of the same noise in one pass.
    g, _ = loading.load_generator(modeldir, "v1", "apple")
    whole = pictures.to_uint8(gan_model.generate(g, gi.sample_noise(300, 100, seed=3)))
    for i in (0, gi.FILE_BATCH - 1, gi.FILE_BATCH, 299):
        assert np.array_equal(np.asarray(Image.open(files[i])), whole[i])
    with pytest.raises(UserError, match="a grid, .*at most 1024 images .*--outdir DIR alone"):
        run(modeldir, "v1", "apple", "--num-images", 2000, "--save", tmp_path / "g.png")
    with pytest.raises(UserError, match="at most 1024"):
        run(modeldir, "v1", "apple", "--num-images", 2000)


@pytest.mark.parametrize("code, message", [(28, "no space left"), (30, "read-only file system")])
def test_full_or_read_only_disk_is_one_line(modeldir, tmp_path, monkeypatch, code, message):
    from fruitgan.util import safe_files
    def fault(*args, **kwargs):
        raise OSError(code, "fault")

    monkeypatch.setattr(safe_files.tempfile, "mkstemp", fault)
    for args in (["--save", tmp_path / "g.png"], ["--outdir", tmp_path / "each"], []):
        with pytest.raises(UserError, match=f"cannot write .*: {message}") as exc:
            run(modeldir, "v1", "apple", "--num-images", 4, "--seed", 0, *args)
        assert "\n" not in str(exc.value)


def test_classify_on_a_read_only_models_folder_trains_without_caching(tiny_workdir, capsys, headless, monkeypatch):
    """The cache is checked before training: read-only models/ gives the answer and a note, not a late failure."""
    import errno
    import tempfile

    build_model(tiny_workdir, "t", fruits=("apple", "banana", "pear"), dataset_version=TINY_VERSION)
    models = (tiny_workdir / "models").resolve()
    real_mkstemp = tempfile.mkstemp

    def read_only_models(*args, dir=None, **kwargs):
        if dir is not None and (models == Path(dir).resolve() or models in Path(dir).resolve().parents):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only_models)
    (models / "evaluators").mkdir()
    assert run(tiny_workdir, "t", "pear", "--num-images", 4, "--seed", 1, "--classify") == 0
    out = capsys.readouterr().out
    assert "training the quality classifier" in out and "recognised as pear: " in out
    assert "note: the quality classifier was not cached" in out and "read-only file system" in out
    assert list((models / "evaluators").iterdir()) == []
    assert gi.cache_unwritable(models / "evaluators") == "read-only file system"
    monkeypatch.undo()
    assert gi.cache_unwritable(models / "evaluators") is None and list((models / "evaluators").iterdir()) == []


def test_beside_real_puts_real_drawings_of_the_dataset_above_the_fakes(tiny_workdir, tmp_path, headless):
    import data_loader

    build_model(tiny_workdir, "t", fruits=("apple", "banana", "pear"), dataset_version=TINY_VERSION)
    plain, beside = tmp_path / "plain.png", tmp_path / "beside.png"
    assert run(tiny_workdir, "t", "pear", "--num-images", 4, "--seed", 3, "--save", plain) == 0
    assert run(tiny_workdir, "t", "pear", "--num-images", 4, "--seed", 3, "--beside-real", "--save", beside) == 0
    fakes, both = np.asarray(Image.open(plain)), np.asarray(Image.open(beside))
    assert both.shape[1] == fakes.shape[1] and both.shape[0] > 2 * fakes.shape[0]   # two grids and their labels
    assert np.array_equal(both[-fakes.shape[0]:], fakes)                             # the fakes, unchanged, below
    real, which = gi.real_drawings_for(tiny_workdir, {"dataset_version": TINY_VERSION, "model": "t"}, "pear", 4, 3)
    ds = data_loader.load_fruit(tiny_workdir, TINY_VERSION, "pear")
    stored = {bytes(x) for x in ds.pixels[ds.real_index].numpy()}
    assert which == "training drawings" and all(bytes(x) in stored for x in real)   # no split: its real drawings
    with pytest.raises(UserError, match="--beside-real goes with a grid"):
        run(tiny_workdir, "t", "pear", "--beside-real", "--interpolate")
