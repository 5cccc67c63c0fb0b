"""data_loader.py: reading npzData/<fruit>_version<NAME>.npz into torch tensors.

Test data: the PIXELS are REAL Quick, Draw! apples (rows of the bundled rawData/sample/bitmap/apple.npy,
28x28, 0..255). The NPZ containers around them are SYNTHETIC, written here by hand in the npz_format.py layout
(so these tests do not depend on imageToNPZ.py), except the round-trip test, which packs PNG files
through imageToNPZ.pack. Fruit names other than apple label apple drawings (synthetic), and the
malformed files (wrong shape, dtype, metadata, garbage bytes) are deliberately broken.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import data_loader
from fruitgan.data import npz_packing
from fruitgan.data import npz_format
from fruitgan.util import pictures
from fruitgan.util.user_io import UserError

ROOT = Path(__file__).resolve().parent.parent
BITMAP = ROOT / "rawData" / "sample" / "bitmap" / "apple.npy"
SIDE = 28


def real_drawings(count: int, start: int = 0) -> np.ndarray:
    """(count, 28, 28) uint8 real apple drawings."""
    return np.load(BITMAP, allow_pickle=False)[start:start + count].reshape(count, SIDE, SIDE)


def write_npz(workdir: Path, fruit: str, version: str, images=None, augmented=None, source_index=None,
              metadata="default", **extra) -> Path:
    """An npz in the npz_format.py layout, written by hand; any array can be replaced by a broken one."""
    images = real_drawings(6) if images is None else images
    n = len(images)
    augmented = np.array([False] * (n - 2) + [True] * 2) if augmented is None else augmented
    source_index = (np.array(list(range(n - 2)) + [0, 1], dtype=np.int32)
                    if source_index is None else source_index)
    if metadata == "default":
        metadata = np.array(json.dumps({"fruit": fruit, "version": version, "resolution": int(images.shape[-1]),
                                        "count": n, "quality": "standard"}))
    path = workdir / "npzData" / f"{fruit}_version{version}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = dict(images=images, augmented=augmented, source_index=source_index, **extra)
    if metadata is not None:
        arrays["metadata"] = metadata
    np.savez_compressed(path, **arrays)
    return path


def test_pixels_map_exactly_onto_minus_one_to_one(workdir):
    pixels = real_drawings(6)
    assert pixels.min() == 0 and pixels.max() == 255  # the real sample spans the whole range
    write_npz(workdir, "apple", "A", images=pixels)
    ds = data_loader.load_fruit(workdir, "A", "apple")

    # Kept as stored (uint8, the array read from the file), converted only where asked.
    assert ds.pixels.dtype == torch.uint8 and ds.pixels.shape == (6, SIDE, SIDE)
    assert np.array_equal(ds.pixels.numpy(), pixels)
    images = ds.images_at(torch.arange(6))
    assert images.dtype == torch.float32 and images.shape == (6, 1, SIDE, SIDE)
    assert images.min().item() == -1.0 and images.max().item() == 1.0
    flat, values = images[:, 0].reshape(-1), torch.from_numpy(pixels.reshape(-1))
    assert torch.all(flat[values == 0] == -1.0) and torch.all(flat[values == 255] == 1.0)
    expected = torch.from_numpy(pixels).double().div(127.5).sub(1.0).unsqueeze(1).float()
    assert torch.equal(images, expected)  # pixel/127.5 - 1 computed in float64, rounded once
    lut = pictures.to_unit_range(np.arange(256, dtype=np.uint8).reshape(1, 16, 16)).reshape(-1)
    assert torch.equal(lut, -lut.flip(0))  # symmetric: 127 -> -1/255, 128 -> +1/255
    assert ds.fruit == "apple" and ds.version == "A" and ds.resolution == SIDE and len(ds) == 6
    assert ds.metadata["quality"] == "standard"
    assert ds.augmented.dtype == torch.bool and ds.augmented.tolist() == [False] * 4 + [True] * 2
    assert ds.source_index.dtype == torch.int64 and ds.source_index.tolist() == [0, 1, 2, 3, 0, 1]
    assert ds.real_index.tolist() == [0, 1, 2, 3] and ds.train_index.tolist() == list(range(6))
    assert ds.heldout_index.numel() == 0 and not ds.has_split


def test_round_trip_from_png_folder_through_image_to_npz(workdir):
    folder = workdir / "imageData" / "pear" / "versionR"
    folder.mkdir(parents=True)
    real = real_drawings(3, start=100)
    for i, pixels in enumerate(real):
        Image.fromarray(pixels, mode="L").save(folder / f"real_{i:06d}.png")
    Image.fromarray(np.ascontiguousarray(real[2][::-1]), mode="L").save(folder / "aug_000003_from_000002.png")
    (folder / "metadata.json").write_text(json.dumps({"fruit": "pear", "version": "R", "resolution": SIDE,
                                                      "augmentation": {"enabled": True, "settings": {}}}))
    npz_packing.pack(workdir, "R", progress=False, log=lambda _: None)

    ds = data_loader.load_fruit(workdir, "R", "pear")
    pixels_back = ds.pixels.numpy()
    np.testing.assert_array_equal(pixels_back[:3], real)
    np.testing.assert_array_equal(pixels_back[3], real[2][::-1])
    assert ds.augmented.tolist() == [False, False, False, True]
    assert ds.source_index.tolist() == [0, 1, 2, 2]
    assert ds.metadata["augmentation"]["enabled"] is True and ds.metadata["count"] == 4


def test_list_versions_sorted_and_ignores_other_files(workdir):
    for fruit, version in [("pear", "B"), ("apple", "B"), ("apple", "A_2"), ("banana", "10")]:
        write_npz(workdir, fruit, version)
    folder = workdir / "npzData"
    (folder / ".apple_versionC.npz.x1y2.tmp").write_bytes(b"half")  # an interrupted write
    (folder / "notes.txt").write_text("hi")
    (folder / "appleversionD.npz").write_bytes(b"")
    assert npz_format.list_versions(workdir) == {"10": ["banana"], "A_2": ["apple"], "B": ["apple", "pear"]}
    assert npz_format.list_versions(workdir / "nowhere") == {}
    assert npz_format.npz_path(workdir, "apple", "A_2") == (folder / "apple_versionA_2.npz").resolve()


def test_missing_version_and_fruit_say_what_exists_and_what_to_run(workdir):
    with pytest.raises(UserError, match=r"no dataset version 'A'.*none.*run imageToNPZ.py --version A"):
        data_loader.load_fruit(workdir, "A", "apple")
    write_npz(workdir, "apple", "A")
    write_npz(workdir, "banana", "A")
    write_npz(workdir, "apple", "B")
    with pytest.raises(UserError, match=r"'Z' \(versions there are: A, B\); run imageToNPZ.py --version Z"):
        data_loader.load_version(workdir, "Z")
    with pytest.raises(UserError, match=r"no 'pear' dataset \(it has: apple, banana\); "
                                        r"run imageToNPZ.py --version A --fruits pear"):
        data_loader.load_fruit(workdir, "A", "pear")
    with pytest.raises(UserError, match="invalid fruit"):
        data_loader.load_fruit(workdir, "A", "../apple")
    with pytest.raises(UserError, match="invalid version"):
        npz_format.npz_path(workdir, "apple", "A/../../x")


@pytest.mark.parametrize("broken, message", [
    (dict(images=real_drawings(4).reshape(4, SIDE * SIDE)), r"images are uint8 \(4, 784\)"),
    (dict(images=np.zeros((4, SIDE, 32), np.uint8)), r"images are uint8 \(4, 28, 32\)"),
    (dict(images=real_drawings(4).astype(np.float32)), r"images are float32 \(4, 28, 28\)"),
    (dict(images=real_drawings(4)[:, None]), r"images are uint8 \(4, 1, 28, 28\)"),
    (dict(images=np.zeros((0, SIDE, SIDE), np.uint8), augmented=np.zeros(0, bool),
          source_index=np.zeros(0, np.int32)), r"with N >= 1"),
    (dict(augmented=np.zeros(5, bool)), r"augmented is bool \(5,\), expected bool \(6,\)"),
    (dict(augmented=np.zeros(6, np.uint8)), r"augmented is uint8"),
    (dict(source_index=np.arange(7, dtype=np.int32)), r"source_index is int32 \(7,\)"),
    (dict(source_index=np.array([0, 1, 2, 3, 0, 9], np.int32)), r"outside 0\.\.5"),
    (dict(metadata=np.array("{not json")), r"metadata unreadable"),
    (dict(metadata=np.array(json.dumps([1, 2]))), r"metadata unreadable \(JSON is not an object\)"),
    (dict(metadata=None), r"lacks metadata"),
    (dict(metadata=np.array(json.dumps({"fruit": "banana"}))), r"holds 'banana' images, not 'apple'"),
], ids=["flat", "non-square", "float", "4-d", "empty", "aug-length", "aug-dtype", "src-length", "src-range",
        "meta-json", "meta-list", "meta-missing", "wrong-fruit"])
def test_malformed_npz_is_a_user_error_naming_the_file(workdir, broken, message):
    path = write_npz(workdir, "apple", "A", **broken)
    with pytest.raises(UserError, match=message) as info:
        data_loader.load_fruit(workdir, "A", "apple")
    assert str(path) in str(info.value)
    assert "imageToNPZ.py --version A --fruits apple --overwrite" in str(info.value)


def test_unreadable_and_pickled_files_are_refused(workdir):
    path = write_npz(workdir, "apple", "A")
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(UserError, match="cannot read"):
        data_loader.load_fruit(workdir, "A", "apple")
    # An object array would need pickle to load; the loader must refuse instead of unpickling.
    write_npz(workdir, "apple", "A", metadata=np.array([{"fruit": "apple"}], dtype=object))
    with pytest.raises(UserError, match="cannot read"):
        data_loader.load_fruit(workdir, "A", "apple")


def test_load_version_all_fruits_subset_and_mixed_resolutions(workdir):
    write_npz(workdir, "banana", "A", images=real_drawings(3, 10), augmented=np.zeros(3, bool),
              source_index=np.arange(3, dtype=np.int32))
    write_npz(workdir, "apple", "A")
    both = data_loader.load_version(workdir, "A")
    assert list(both) == ["apple", "banana"]
    assert [len(ds) for ds in both.values()] == [6, 3]
    assert list(data_loader.load_version(workdir, "A", ["banana"])) == ["banana"]
    with pytest.raises(UserError, match="no 'kiwi' dataset"):
        data_loader.load_version(workdir, "A", ["apple", "kiwi"])

    big = np.kron(real_drawings(2), np.ones((2, 2), np.uint8))  # (2, 56, 56): the same drawings upscaled
    write_npz(workdir, "pear", "A", images=big, augmented=np.zeros(2, bool), source_index=np.arange(2))
    with pytest.raises(UserError, match=r"different resolutions \(apple 28x28, banana 28x28, pear 56x56\)"):
        data_loader.load_version(workdir, "A")
    assert data_loader.load_fruit(workdir, "A", "pear").resolution == 56

