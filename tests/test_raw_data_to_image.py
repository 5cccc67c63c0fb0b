"""rawDataToImage: the tree it writes, bad input, versions, prompts (stdin) and flags."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fruitgan.data import image_version
from fruitgan.data import quickdraw_formats as qf
import rawDataToImage as r2i
from fruitgan.data import stroke_render as sr
from fruitgan.util.safe_files import FRUITS
from fruitgan.util.user_io import UserError

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "rawDataToImage.py"
METADATA_KEYS = {"fruit", "version", "resolution", "count", "real_count", "augmented_count", "quality",
                 "quality_rule", "formats", "source_files", "augmentation", "skipped", "colour", "created", "tool"}


def run_cli(workdir, *args, stdin=""):
    return subprocess.run([sys.executable, str(SCRIPT), "--workdir", str(workdir), "--no-progress", *args],
                          input=stdin, capture_output=True, text=True, timeout=120, cwd=ROOT)


def options(workdir, **kw):
    # Real drawings only unless a test asks for copies: these tests count and compare the real ones.
    base = dict(workdir=workdir, fruits=["apple"], resolution=28, count=10, workers=1, progress=False, augment=False)
    base.update(kw)
    return r2i.ConvertOptions(**base)


def folder(workdir, fruit="apple", version="1"):
    return workdir / "imageData" / fruit / f"version{version}"


def metadata(workdir, fruit="apple", version="1"):
    return json.loads((folder(workdir, fruit, version) / "metadata.json").read_text())


def leftovers(workdir):
    return [p for p in (workdir / "imageData").rglob(".version*")]


def valid_keys(path, fruit):
    return {d.key_id for d in qf.iter_drawings(path, fruit) if isinstance(d, qf.Drawing)}


def test_end_to_end_cli_writes_the_tree(workdir):
    done = run_cli(workdir, "--yes", "--resolution", "28", "--count", "10")
    assert done.returncode == 0, done.stderr
    for fruit in FRUITS:
        files = sorted(p.name for p in folder(workdir, fruit).iterdir())
        assert files == ["metadata.json"] + [f"real_{i:06d}.png" for i in range(10)]
        meta = metadata(workdir, fruit)
        assert set(meta) >= METADATA_KEYS
        assert (meta["fruit"], meta["version"], meta["resolution"], meta["count"]) == (fruit, "1", 28, 10)
        assert meta["colour"] == "white strokes (255) on black (0)" and meta["tool"] == "rawDataToImage.py"
        assert all(src.startswith("sample/") for src in meta["source_files"])
        with Image.open(folder(workdir, fruit) / "real_000000.png") as img:
            pixels = np.asarray(img)
            assert img.mode == "L" and img.size == (28, 28)
        assert np.median(pixels) == 0 and pixels.max() == 255  # white strokes on black
    assert leftovers(workdir) == []
    assert "fruit" in done.stdout and "skipped" in done.stdout  # the summary table
    assert "blueberry" not in done.stdout  # sample extras that are not project fruits are ignored


def test_duplicates_are_removed_and_short_fruits_reported(workdir):
    sample = workdir / "rawData" / "sample"
    expected = valid_keys(sample / "simplified" / "apple.ndjson", "apple") | valid_keys(
        sample / "raw" / "apple.ndjson", "apple")
    # 32 px: at 28 px "auto" takes apple's 1000 bitmaps, which hold more drawings than its stroke files.
    summary = r2i.convert(options(workdir, quality="all", count=1000, resolution=32))
    apple = summary["fruits"]["apple"]
    assert apple["real_count"] == len(expected) and apple["short"] is True
    raw_keys = valid_keys(sample / "raw" / "apple.ndjson", "apple")
    repeated = raw_keys & valid_keys(sample / "simplified" / "apple.ndjson", "apple")
    assert repeated and apple["skipped"][qf.SKIP_DUPLICATE] == len(repeated)  # raw repeats simplified drawings
    assert apple["formats"] == [qf.SIMPLIFIED, qf.RAW]  # auto: strokes, not the bitmaps
    assert f"only {len(expected)} images" in r2i.format_summary(summary)
    # Duplicates keep the simplified version: the first image is the first simplified drawing.
    first = next(d for d in qf.iter_drawings(sample / "simplified" / "apple.ndjson", "apple")
                 if isinstance(d, qf.Drawing))
    with Image.open(folder(workdir) / "real_000000.png") as img:
        assert np.array_equal(np.asarray(img), sr.image_array(sr.render_strokes(first.strokes, 32)))
    assert metadata(workdir)["skipped"] == apple["skipped"]


def test_bitmaps_on_request(workdir):
    r2i.convert(options(workdir, formats=[qf.BITMAP], count=12))
    meta = metadata(workdir)
    assert meta["formats"] == [qf.BITMAP] and meta["source_files"] == ["sample/bitmap/apple.npy"]
    rows = np.load(workdir / "rawData" / "sample" / "bitmap" / "apple.npy")
    with Image.open(folder(workdir) / "real_000000.png") as img:
        assert np.array_equal(np.asarray(img), rows[0].reshape(28, 28))  # 28 px: the row itself


def test_user_file_with_every_bad_line_kind(workdir):
    raw = workdir / "rawData"
    good = (raw / "sample" / "simplified" / "apple.ndjson").read_text().splitlines()[:5]
    base = json.loads(good[0])
    bad = [
        '{"word": "apple", "drawing": [[[1,2],[3,4]]',  # malformed JSON
        json.dumps({"word": "apple", "key_id": "a"}),  # missing drawing
        json.dumps({**base, "key_id": "b", "drawing": []}),  # empty strokes
        json.dumps({**base, "key_id": "c", "drawing": [[[1, 2, 3], [4, 5]]]}),  # x/y lengths
        json.dumps({**base, "key_id": "d", "drawing": [[[1, -2], [4, 5]]]}),  # negative
        json.dumps({**base, "key_id": "e", "drawing": [[[1, 300], [4, 5]]]}),  # beyond 255
        json.dumps({**base, "key_id": "f", "drawing": [[[1, "x"], [4, 5]]]}),  # non-numeric
        json.dumps({**base, "key_id": "g", "word": "banana"}),  # not this file's fruit
    ]
    (raw / "full_simplified_apple.ndjson").write_text("\n".join(good[:2] + bad + good[2:]) + "\n")
    summary = r2i.convert(options(workdir, quality="all"))
    apple = summary["fruits"]["apple"]
    assert apple["real_count"] == 5 and apple["source_files"] == ["full_simplified_apple.ndjson"]
    assert apple["skipped"] == {qf.SKIP_JSON: 1, qf.SKIP_NO_DRAWING: 1, qf.SKIP_EMPTY: 1, qf.SKIP_LENGTHS: 1,
                                qf.SKIP_RANGE: 2, qf.SKIP_NON_NUMERIC: 1, qf.SKIP_WORD: 1}
    assert metadata(workdir)["skipped"] == apple["skipped"]


def test_wrong_fruit_file_keeps_nothing_and_writes_no_folder(workdir):
    raw = workdir / "rawData"
    (raw / "apple.ndjson").write_bytes((raw / "sample" / "simplified" / "banana.ndjson").read_bytes())
    summary = r2i.convert(options(workdir))
    assert summary["fruits"]["apple"]["real_count"] == 0
    bananas = len((raw / "apple.ndjson").read_bytes().splitlines())
    assert bananas > 0 and summary["fruits"]["apple"]["skipped"] == {qf.SKIP_WORD: bananas}
    assert not folder(workdir).exists() and leftovers(workdir) == []
    assert "no drawing kept" in r2i.format_summary(summary)


def test_empty_and_foreign_files_are_noted_not_fatal(workdir):
    raw = workdir / "rawData"
    (raw / "apple.ndjson").write_bytes(b"")
    (raw / "readme.txt").write_text("hello\n")
    (raw / "prices.csv").write_text("fruit,price\napple,1\n")
    (raw / "banana.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(range(256)) * 8)
    done = run_cli(workdir, "--yes", "--fruits", "apple,banana", "--count", "3", "--resolution", "16")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "rawData/apple.ndjson: empty file" in done.stdout
    assert "not Quick, Draw! data (skipped): 3" in done.stdout
    assert metadata(workdir)["source_files"][0].startswith("sample/")  # empty file: sample used


def test_reading_stops_once_count_is_reached(workdir):
    raw = workdir / "rawData"
    lines = (raw / "sample" / "simplified" / "apple.ndjson").read_text().splitlines()
    with open(raw / "full_simplified_apple.ndjson", "w") as fh:
        for i in range(200):  # 5000 lines: unique key_ids so nothing is a duplicate
            for line in lines:
                fh.write(json.dumps({**json.loads(line), "key_id": f"{i}-{json.loads(line)['key_id']}"}) + "\n")
    summary = r2i.convert(options(workdir, quality="all", count=20, workers=2))
    apple = summary["fruits"]["apple"]
    assert apple["real_count"] == 20
    assert apple["lines_read"] < 1000  # a few chunks, not the 5000-line file


def test_augmentation_fills_up_to_count_reproducibly(workdir):
    s1 = r2i.convert(options(workdir, fruits=["pear"], count=60, augment=True, seed=5, version="a"))
    s2 = r2i.convert(options(workdir, fruits=["pear"], count=60, augment=True, seed=5, version="b",
                             workers=2))
    pear = s1["fruits"]["pear"]
    assert pear["count"] == 60 and pear["augmented_count"] == 60 - pear["real_count"] > 0
    names = sorted(p.name for p in folder(workdir, "pear", "a").glob("aug_*.png"))
    assert len(names) == pear["augmented_count"]
    for i, name in enumerate(names):
        index, source = map(int, re.fullmatch(r"aug_(\d{6})_from_(\d{6})\.png", name).groups())
        assert index == pear["real_count"] + i and source < pear["real_count"]
    meta = metadata(workdir, "pear", "a")
    assert meta["augmentation"]["enabled"] is True and meta["augmentation"]["settings"]["seed"] == 5
    assert meta["augmented_count"] == pear["augmented_count"]
    for name in names:  # same seed: same images, whatever the number of workers
        assert (folder(workdir, "pear", "a") / name).read_bytes() == (folder(workdir, "pear", "b") / name).read_bytes()
    assert s2["fruits"]["pear"]["count"] == 60


def test_existing_version_is_refused_then_overwritten(workdir):
    r2i.convert(options(workdir, count=3))
    marker = folder(workdir) / "old_marker.txt"
    marker.write_text("old")
    done = run_cli(workdir, "--yes", "--fruits", "apple", "--version", "1", "--count", "4")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "already exists" in done.stderr and "--overwrite" in done.stderr
    assert marker.exists()
    with pytest.raises(UserError, match="already exists"):
        r2i.convert(options(workdir, count=4, version="1"))
    done = run_cli(workdir, "--yes", "--fruits", "apple", "--version", "1", "--count", "4", "--overwrite")
    assert done.returncode == 0, done.stderr
    assert not marker.exists() and metadata(workdir)["count"] == 4 and leftovers(workdir) == []


def test_failed_overwrite_keeps_the_old_version(workdir, monkeypatch):
    r2i.convert(options(workdir, count=3))
    before = {p.name: p.read_bytes() for p in folder(workdir).iterdir()}
    written = []

    def failing_write(self, name, data):
        if len(written) == 5:
            raise KeyboardInterrupt  # e.g. Ctrl+C half way
        written.append(name)
        (self.partial / name).write_bytes(data)

    monkeypatch.setattr(image_version.FruitWriter, "write", failing_write)
    with pytest.raises(KeyboardInterrupt):
        r2i.convert(options(workdir, count=8, version="1", overwrite=True))
    assert {p.name: p.read_bytes() for p in folder(workdir).iterdir()} == before
    assert leftovers(workdir) == []


def test_unwritable_output_is_one_line_error(workdir):
    (workdir / "imageData").write_text("a file where the folder should be")
    done = run_cli(workdir, "--yes", "--fruits", "apple", "--count", "2")
    assert done.returncode == 2
    assert done.stderr.startswith("error: cannot write") and done.stderr.strip().count("\n") == 0


def test_prompts_through_stdin_with_bad_answers_asked_again(workdir):
    answers = "\n".join([
        "apple,kiwi", "apple",  # unknown fruit, then a good one
        "999", "24",  # outside 16-256, then good
        "fancy", "simple",  # unknown preset, then good
        "zero", "6",  # not a number, then good
        "maybe", "n",  # yes/no
        "../escape", "mine",  # unsafe name, then good
    ]) + "\n"
    done = run_cli(workdir, stdin=answers)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("invalid answer") == 6
    assert "[apple,banana,blackberry,grapes,pear,strawberry,watermelon]" in done.stdout  # defaults shown
    assert "[64]" in done.stdout and "[standard]" in done.stdout and "[1000]" in done.stdout
    assert "simple " in done.stdout and "strokes" in done.stdout  # presets explained
    meta = metadata(workdir, "apple", "mine")
    assert (meta["resolution"], meta["quality"], meta["count"], meta["augmentation"]["enabled"]) == (24, "simple", 6, False)
    assert not (workdir / "imageData" / "banana").exists()


def test_existing_version_prompt_asks_for_another_name(workdir):
    r2i.convert(options(workdir, count=2))
    old = metadata(workdir)
    done = run_cli(workdir, "--fruits", "apple", "--resolution", "20", "--quality", "all", "--count", "3",
                   "--no-augment", "--version", "1", stdin="n\n7\n")
    assert done.returncode == 0, done.stderr
    assert "already exists" in done.stdout
    assert metadata(workdir) == old and metadata(workdir, "apple", "7")["count"] == 3


def test_end_of_input_stops_and_empty_answers_take_defaults(workdir):
    done = run_cli(workdir, "--fruits", "pear", "--resolution", "16", stdin="")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: no answer for 'Quality' (end of input)") and "--yes" in done.stderr
    assert not (workdir / "imageData" / "pear").exists()  # no work started on defaults nobody chose
    done = run_cli(workdir, "--fruits", "pear", "--resolution", "16", stdin="\n" * 10)
    assert done.returncode == 0, done.stderr
    meta = metadata(workdir, "pear", "1")
    assert meta["quality"] == "standard" and meta["resolution"] == 16


def test_bad_flags_are_refused(workdir, capsys):
    for argv in (["--resolution", "300"], ["--version", "../x"], ["--fruits", "kiwi"], ["--formats", "jpg"]):
        with pytest.raises(SystemExit) as exit_info:
            r2i.main(["--workdir", str(workdir), "--yes", *argv])
        assert exit_info.value.code == 2
    assert "--resolution" in capsys.readouterr().err
    with pytest.raises(UserError, match="no rawData"):
        r2i.main(["--workdir", str(workdir / "nowhere"), "--yes"])


def test_next_free_version_counts_up(workdir):
    assert image_version.next_free_version(workdir) == "1"
    r2i.convert(options(workdir, count=1))
    r2i.convert(options(workdir, count=1, version="5", fruits=["pear"]))
    r2i.convert(options(workdir, count=1, version="best", fruits=["pear"]))
    assert image_version.next_free_version(workdir) == "6"


def test_small_fruit_is_filled_up_by_default_and_real_only_on_request(workdir):
    """The default follows the few-drawings measurement (docs/quality.md): stroke-level copies fill a fruit with
    fewer real drawings than --count; --no-augment keeps the real ones only."""
    common = ["--yes", "--fruits", "pear", "--resolution", "28", "--count", "50", "--workers", "1"]
    assert run_cli(workdir, *common, "--version", "d").returncode == 0
    assert run_cli(workdir, *common, "--version", "r", "--no-augment").returncode == 0
    filled, real_only = metadata(workdir, "pear", "d"), metadata(workdir, "pear", "r")
    assert filled["count"] == 50 and filled["augmented_count"] == 50 - filled["real_count"] > 0
    assert real_only["augmented_count"] == 0 and real_only["count"] == real_only["real_count"] < 50
