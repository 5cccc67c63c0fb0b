"""imageToNPZ.py: packing imageData version folders into npzData/<fruit>_version<NAME>.npz.

Test data: the PIXELS of every "real_*.png" are REAL Quick, Draw! apples (rows of the bundled
rawData/sample/bitmap/apple.npy, 28x28, white on black). The rest is SYNTHETIC and built here
with PIL so these tests do not depend on rawDataToImage.py: the folders, the metadata.json values,
the "augmented" images (mirror images of a real one), the use of apple drawings under other fruit
names (banana, pear), and the broken files (RGB, resized, truncated, garbage bytes).
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imageToNPZ
from fruitgan.data import npz_packing
from fruitgan.util.user_io import UserError, run_main

ROOT = Path(__file__).resolve().parent.parent
BITMAP = ROOT / "rawData" / "sample" / "bitmap" / "apple.npy"
SIDE = 28  # the bitmap sample's resolution


def real_drawings(count: int, start: int = 0) -> np.ndarray:
    """(count, 28, 28) uint8 real apple drawings from the bundled sample."""
    rows = np.load(BITMAP, allow_pickle=False)[start:start + count]
    return rows.reshape(count, SIDE, SIDE)


def make_version(workdir: Path, fruit: str, version: str, n_real: int = 4, aug_sources=(1,), start: int = 0,
                 created: str = "2024-01-01T00:00:00+00:00", metadata: bool = True) -> tuple:
    """Write imageData/<fruit>/version<version>/ by hand (image_version.py layout); returns (folder, (N,28,28))."""
    folder = workdir / "imageData" / fruit / f"version{version}"
    folder.mkdir(parents=True)
    real = real_drawings(n_real, start)
    for i, pixels in enumerate(real):
        Image.fromarray(pixels, mode="L").save(folder / f"real_{i:06d}.png")
    augmented = []
    for j, src in enumerate(aug_sources):
        mirrored = np.ascontiguousarray(real[src][:, ::-1])  # synthetic augmentation: a mirror image
        Image.fromarray(mirrored, mode="L").save(folder / f"aug_{n_real + j:06d}_from_{src:06d}.png")
        augmented.append(mirrored)
    if metadata:
        meta = {
            "fruit": fruit, "version": version, "resolution": SIDE, "count": n_real + len(aug_sources),
            "real_count": n_real, "augmented_count": len(aug_sources), "quality": "standard",
            "quality_rule": "synthetic test rule", "formats": ["bitmap"],
            "source_files": ["sample/bitmap/apple.npy"],
            "augmentation": {"enabled": bool(aug_sources), "settings": {"mirror": True}},
            "skipped": {}, "colour": "white strokes (255) on black (0)", "created": created,
            "tool": "rawDataToImage.py",
        }
        (folder / "metadata.json").write_text(json.dumps(meta))
    return folder, np.concatenate([real, np.array(augmented, dtype=np.uint8).reshape(-1, SIDE, SIDE)])


def run_cli(workdir: Path, *args: str, input_text: str = "") -> subprocess.CompletedProcess:
    """Run the script as a user would, answers piped through stdin."""
    return subprocess.run([sys.executable, str(ROOT / "imageToNPZ.py"), "--workdir", str(workdir), *args],
                          input=input_text, capture_output=True, text=True, timeout=60, cwd=workdir)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def npz_files(workdir: Path) -> list:
    """Every file in npzData/ (temporary ones included), by name."""
    folder = workdir / "npzData"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def load(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


# ----------------------------------------------------------------------------- the packed file


def test_round_trip_pixels_metadata_and_sources(workdir):
    folder, expected = make_version(workdir, "apple", "A", n_real=5, aug_sources=(1, 3))
    written = npz_packing.pack(workdir, "A", progress=False, log=lambda _: None)

    assert written == [workdir.resolve() / "npzData" / "apple_versionA.npz"]
    data = load(written[0])
    assert set(data) == {"images", "augmented", "source_index", "metadata"}
    assert data["images"].dtype == np.uint8 and data["images"].shape == (7, SIDE, SIDE)
    np.testing.assert_array_equal(data["images"], expected)
    np.testing.assert_array_equal(data["images"][:5], real_drawings(5))  # real pixels survive unchanged
    assert data["augmented"].dtype == np.bool_
    assert data["augmented"].tolist() == [False] * 5 + [True, True]
    assert data["source_index"].dtype == np.int32
    assert data["source_index"].tolist() == [0, 1, 2, 3, 4, 1, 3]

    meta = json.loads(str(data["metadata"][()]))
    assert data["metadata"].shape == () and data["metadata"].dtype.kind == "U"
    assert meta["fruit"] == "apple" and meta["version"] == "A" and meta["resolution"] == SIDE
    assert meta["count"] == 7 and meta["real_count"] == 5 and meta["augmented_count"] == 2
    assert meta["quality"] == "standard" and meta["source_files"] == ["sample/bitmap/apple.npy"]
    assert meta["augmentation"] == {"enabled": True, "settings": {"mirror": True}}
    assert meta["image_files"][0] == "real_000000.png" and meta["image_files"][-1] == "aug_000006_from_000003.png"
    assert meta["npz_created"].endswith("+00:00")


def test_source_index_follows_positions_when_real_files_have_gaps(workdir):
    folder, expected = make_version(workdir, "apple", "A", n_real=4, aug_sources=(3,))
    (folder / "real_000001.png").unlink()  # a user removed a bad drawing
    npz_packing.pack(workdir, "A", progress=False, log=lambda _: None)
    data = load(workdir / "npzData" / "apple_versionA.npz")
    np.testing.assert_array_equal(data["images"], expected[[0, 2, 3, 4]])
    assert data["source_index"].tolist() == [0, 1, 2, 2]  # the aug image points at real_000003, now at index 2
    assert json.loads(str(data["metadata"][()]))["count"] == 4


# ----------------------------------------------------------------------------- prompts and flags


def test_prompts_reask_on_bad_answers_then_pack_the_choice(workdir):
    make_version(workdir, "apple", "A", created="2024-01-01T00:00:00+00:00")
    make_version(workdir, "banana", "A", created="2024-01-01T00:00:00+00:00")
    make_version(workdir, "apple", "B", created="2024-02-01T00:00:00+00:00")
    proc = run_cli(workdir, input_text="Z\nA\nkiwi\nbanana\n")
    assert proc.returncode == 0, proc.stderr
    assert "Version to pack [B]" in proc.stdout  # the newest complete version is the default
    assert proc.stdout.count("invalid answer") == 2
    assert "there are: A, B" in proc.stdout
    for line in ("A                apple", "B                apple", "complete"):
        assert line in proc.stdout  # the listing shows versions, fruits and status
    assert npz_files(workdir) == ["banana_versionA.npz"]
    assert "wrote npzData/banana_versionA.npz: 5 images" in proc.stdout


def test_empty_answers_take_defaults_and_skip_incomplete_fruits(workdir):
    make_version(workdir, "apple", "A", created="2024-01-01T00:00:00+00:00")
    make_version(workdir, "apple", "B", created="2024-03-01T00:00:00+00:00")
    make_version(workdir, "banana", "B", created="2024-03-01T00:00:00+00:00")
    make_version(workdir, "pear", "B", metadata=False)  # still being written
    proc = run_cli(workdir, input_text="\n\n")
    assert proc.returncode == 0, proc.stderr
    assert "skipping pear: incomplete (no metadata.json)" in proc.stdout
    assert npz_files(workdir) == ["apple_versionB.npz", "banana_versionB.npz"]
    assert "done: 2 file(s)" in proc.stdout


def test_end_of_input_at_a_prompt_stops_before_packing(workdir):
    make_version(workdir, "apple", "A")
    proc = run_cli(workdir, input_text="")
    assert_one_line_error(proc, "no answer for 'Version to pack' (end of input)", "--yes to take the defaults")
    assert not (workdir / "npzData").exists() or npz_files(workdir) == []


def test_incomplete_fruit_typed_at_the_prompt_is_reasked(workdir):
    make_version(workdir, "apple", "A")
    make_version(workdir, "pear", "A", metadata=False)
    proc = run_cli(workdir, input_text="\npear\napple\n")
    assert proc.returncode == 0, proc.stderr
    assert "pear not complete" in proc.stdout
    assert npz_files(workdir) == ["apple_versionA.npz"]


def test_flags_answer_every_prompt(workdir):
    make_version(workdir, "apple", "A")
    make_version(workdir, "banana", "A")
    make_version(workdir, "apple", "B", created="2030-01-01T00:00:00+00:00")
    proc = run_cli(workdir, "--version", "versionA", "--fruits", " Banana ", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert "[" not in proc.stdout.split("status")[-1]  # no prompt was printed
    assert npz_files(workdir) == ["banana_versionA.npz"]
    proc = run_cli(workdir, "--version", "A", "--fruits", "all", "--yes", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert npz_files(workdir) == ["apple_versionA.npz", "banana_versionA.npz"]


def test_existing_npz_needs_overwrite_with_yes(workdir):
    folder, _ = make_version(workdir, "apple", "A")
    assert run_cli(workdir, "--yes").returncode == 0
    target = workdir / "npzData" / "apple_versionA.npz"
    before = target.read_bytes()
    Image.fromarray(real_drawings(1, 50)[0]).save(folder / "real_000004.png")  # the folder grew

    proc = run_cli(workdir, "--yes")
    assert_one_line_error(proc, "npzData/apple_versionA.npz already exists", "--overwrite")
    assert target.read_bytes() == before

    proc = run_cli(workdir, "--yes", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert load(target)["images"].shape == (6, SIDE, SIDE)


def test_overwrite_prompt_keeps_file_on_no_and_replaces_on_yes(workdir):
    folder, _ = make_version(workdir, "apple", "A")
    npz_packing.pack(workdir, "A", progress=False, log=lambda _: None)
    target = workdir / "npzData" / "apple_versionA.npz"
    before = target.read_bytes()
    Image.fromarray(real_drawings(1, 50)[0]).save(folder / "real_000004.png")

    proc = run_cli(workdir, input_text="\n\nmaybe\nn\n")
    assert proc.returncode == 0, proc.stderr
    assert "Overwrite it? [y/N]" in proc.stdout and "invalid answer" in proc.stdout
    assert "keeping npzData/apple_versionA.npz" in proc.stdout
    assert target.read_bytes() == before

    proc = run_cli(workdir, input_text="\n\ny\n")
    assert proc.returncode == 0, proc.stderr
    assert load(target)["images"].shape == (6, SIDE, SIDE)


def test_pack_api_refuses_existing_without_overwrite(workdir):
    make_version(workdir, "apple", "A")
    npz_packing.pack(workdir, "A", progress=False, log=lambda _: None)
    with pytest.raises(UserError, match="already exists"):
        npz_packing.pack(workdir, "A", progress=False, log=lambda _: None)
    assert len(npz_packing.pack(workdir, "A", overwrite=True, progress=False, log=lambda _: None)) == 1


# ----------------------------------------------------------------------------- bad input


def _mixed_sizes(folder):
    Image.fromarray(real_drawings(1)[0]).resize((32, 32)).save(folder / "real_000002.png")
    return "real_000002.png is 32x32 but the other images are 28x28"


def _non_square(folder):
    Image.fromarray(real_drawings(1)[0]).resize((28, 32)).save(folder / "real_000002.png")
    return "real_000002.png is 28x32, not square"


def _rgb(folder):
    Image.fromarray(real_drawings(1)[0]).convert("RGB").save(folder / "real_000001.png")
    return "real_000001.png is a RGB image"


def _garbage(folder):
    (folder / "real_000001.png").write_bytes(b"this is not a png")
    return "cannot read imageData/apple/versionA/real_000001.png"


def _truncated(folder):
    data = (folder / "real_000003.png").read_bytes()
    (folder / "real_000003.png").write_bytes(data[: len(data) // 2])
    return "cannot read imageData/apple/versionA/real_000003.png"


def _empty(folder):
    for path in folder.iterdir():
        path.unlink()
    return "imageData/apple/versionA/ holds no images"


def _no_metadata(folder):
    (folder / "metadata.json").unlink()
    return "imageData/apple/versionA/metadata.json is missing"


def _bad_metadata(folder):
    (folder / "metadata.json").write_text("{not json")
    return "cannot read imageData/apple/versionA/metadata.json"


def _orphan_aug(folder):
    (folder / "real_000001.png").unlink()
    return "aug_000004_from_000001.png was made from real_000001.png, which is missing"


def _stray_png(folder):
    Image.fromarray(real_drawings(1)[0]).save(folder / "apple copy.png")
    return "unexpected image imageData/apple/versionA/apple copy.png"


@pytest.mark.parametrize("damage", [_mixed_sizes, _non_square, _rgb, _garbage, _truncated, _empty,
                                    _no_metadata, _bad_metadata, _orphan_aug, _stray_png],
                         ids=lambda f: f.__name__.strip("_"))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(workdir, damage):
    folder, _ = make_version(workdir, "apple", "A")
    fragment = damage(folder)
    proc = run_cli(workdir, "--version", "A", "--yes")
    assert_one_line_error(proc, fragment)
    assert npz_files(workdir) == []


def test_failure_mid_way_keeps_older_npz_and_reports_what_was_written(workdir):
    apple, _ = make_version(workdir, "apple", "A")
    banana, _ = make_version(workdir, "banana", "A")
    npz_packing.pack(workdir, "A", progress=False, log=lambda _: None)
    Image.fromarray(real_drawings(1, 50)[0]).save(apple / "real_000004.png")  # apple's new npz will differ
    old_banana = (workdir / "npzData" / "banana_versionA.npz").read_bytes()
    _truncated(banana)  # decoding fails only while reading pixels, after apple was rewritten

    proc = run_cli(workdir, "--version", "A", "--yes", "--overwrite")
    assert_one_line_error(proc, "banana/versionA/real_000003.png", "already written: npzData/apple_versionA.npz")
    assert (workdir / "npzData" / "banana_versionA.npz").read_bytes() == old_banana
    assert load(workdir / "npzData" / "apple_versionA.npz")["images"].shape == (6, SIDE, SIDE)  # new, complete
    assert npz_files(workdir) == ["apple_versionA.npz", "banana_versionA.npz"]  # no temp file left


def test_interrupt_while_saving_keeps_older_npz(workdir, monkeypatch):
    make_version(workdir, "apple", "A")
    npz_packing.pack(workdir, "A", progress=False, log=lambda _: None)
    target = workdir / "npzData" / "apple_versionA.npz"
    before = target.read_bytes()

    def half_write_then_interrupt(fh, **arrays):
        fh.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", half_write_then_interrupt)
    code = run_main(imageToNPZ.main, ["--workdir", str(workdir), "--yes", "--overwrite"])
    assert code == 130
    assert target.read_bytes() == before
    assert npz_files(workdir) == ["apple_versionA.npz"]


def test_unknown_version_and_fruit_list_what_exists(workdir):
    make_version(workdir, "apple", "A")
    make_version(workdir, "banana", "A")
    make_version(workdir, "apple", "B", metadata=False)
    assert_one_line_error(run_cli(workdir, "--version", "Z", "--yes"),
                          "no image version 'Z'", "there are: A, B (incomplete)")
    assert_one_line_error(run_cli(workdir, "--version", "A", "--fruits", "apple,kiwi", "--yes"),
                          "no images for kiwi", "it has: apple, banana")
    assert_one_line_error(run_cli(workdir, "--version", "../x", "--yes"), "invalid version '../x'")
    assert npz_files(workdir) == []


def test_no_image_data_says_what_to_run(workdir):
    assert_one_line_error(run_cli(workdir, "--yes"), "no image versions", "run rawDataToImage.py first")
    (workdir / "imageData" / "apple" / "versionA").mkdir(parents=True)
    assert_one_line_error(run_cli(workdir, "--yes"), "no complete image version", "A (incomplete)")



def test_file_written_by_another_packer_after_the_check_is_not_replaced(workdir, monkeypatch):
    # Packer B looked (no npz yet), then packer A wrote it and released the lock, then B takes the
    # lock: B must not replace A's file without --overwrite. A's write is simulated at the moment
    # between B's check and B's lock.
    make_version(workdir, "apple", "A")
    target = workdir / "npzData" / "apple_versionA.npz"
    real_lock = npz_packing.npz_version_lock

    def lock_after_other_packer(*args, **kwargs):
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(b"packer A's file")
        return real_lock(*args, **kwargs)

    monkeypatch.setattr(npz_packing, "npz_version_lock", lock_after_other_packer)
    with pytest.raises(UserError, match="written by another run meanwhile.*--overwrite"):
        npz_packing.pack(workdir, "A", progress=False, log=lambda _: None)
    assert target.read_bytes() == b"packer A's file"
    assert len(npz_packing.pack(workdir, "A", overwrite=True, progress=False, log=lambda _: None)) == 1
    assert target.read_bytes() != b"packer A's file"


def test_cli_agreed_overwrite_covers_only_the_files_that_existed(workdir):
    make_version(workdir, "apple", "A")
    make_version(workdir, "pear", "A")
    npz_packing.pack(workdir, "A", fruits=["apple"], progress=False, log=lambda _: None)
    cfg = imageToNPZ.PackConfig(workdir=workdir, version="A", fruits=["apple", "pear"])
    fruits, replace = imageToNPZ.confirm_overwrites(cfg, ["apple", "pear"], "A", _Yes())
    assert fruits == ["apple", "pear"] and replace == ["apple"]      # pear may be written, not replaced
    (workdir / "npzData" / "pear_versionA.npz").write_bytes(b"another run's pear")
    with pytest.raises(UserError, match="pear_versionA.npz was written by another run"):
        npz_packing.pack_fruits(workdir, "A", fruits, progress=False, log=lambda _: None, replace=replace)
    assert (workdir / "npzData" / "pear_versionA.npz").read_bytes() == b"another run's pear"


class _Yes:
    """A prompter that agrees to every overwrite."""

    def confirm(self, *_args, **_kwargs) -> bool:
        return True
