"""npz_format.py: what write_npz writes, read_npz reads back unchanged (and data_loader sees the same pixels).

The pixels are REAL Quick, Draw! apples (rows of the bundled rawData/sample/bitmap/apple.npy, 28x28).
"""
from pathlib import Path

import numpy as np
import pytest
import torch

import data_loader
from fruitgan.data import npz_format
from fruitgan.util import pictures
from fruitgan.util.user_io import UserError

BITMAP = Path(__file__).resolve().parent.parent / "rawData" / "sample" / "bitmap" / "apple.npy"


def packed_apples(count: int = 5) -> npz_format.PackedFruit:
    images = np.load(BITMAP, allow_pickle=False)[:count].reshape(count, 28, 28)
    augmented = np.array([False] * (count - 1) + [True])
    source = np.array(list(range(count - 1)) + [2], dtype=np.int32)
    meta = npz_format.packed_metadata({"quality": "standard", "count": 99}, "apple", "A", 28, count - 1,
                                      [f"real_{i:06d}.png" for i in range(count - 1)] + ["aug_000004_from_000002.png"])
    return npz_format.PackedFruit(images, augmented, source, meta)


def test_write_then_read_gives_back_every_array_and_field(tmp_path):
    packed = packed_apples()
    path = npz_format.write_npz(npz_format.npz_path(tmp_path, "apple", "A"), packed)
    assert path == (tmp_path / "npzData" / "apple_versionA.npz").resolve()
    back = npz_format.read_npz(path, "apple", "A")
    assert np.array_equal(back.images, packed.images) and back.images.dtype == np.uint8
    assert np.array_equal(back.augmented, packed.augmented) and back.augmented.dtype == np.bool_
    assert np.array_equal(back.source_index, packed.source_index) and back.source_index.dtype == np.int32
    assert back.metadata == packed.metadata
    assert back.metadata["count"] == 5 and back.metadata["real_count"] == 4 and back.metadata["augmented_count"] == 1
    assert back.metadata["quality"] == "standard" and back.metadata["image_files"][-1] == "aug_000004_from_000002.png"
    assert npz_format.list_versions(tmp_path) == {"A": ["apple"]}


def test_data_loader_reads_the_written_file_through_the_one_pixel_map(tmp_path):
    packed = packed_apples()
    npz_format.write_npz(npz_format.npz_path(tmp_path, "apple", "A"), packed)
    ds = data_loader.load_fruit(tmp_path, "A", "apple")
    images = ds.images_at(torch.arange(len(ds)))
    assert torch.equal(images, pictures.to_unit_range(packed.images))
    assert np.array_equal(pictures.to_uint8(images), packed.images)   # and back to the stored bytes
    assert torch.equal(ds.pixels, torch.from_numpy(packed.images))   # kept as stored: uint8
    assert ds.source_index.tolist() == [0, 1, 2, 3, 2] and ds.augmented.tolist() == [False] * 4 + [True]


def test_reading_names_the_file_written_for_another_fruit(tmp_path):
    path = npz_format.npz_path(tmp_path, "pear", "A")
    npz_format.write_npz(path, packed_apples())                          # metadata says apple
    with pytest.raises(UserError, match=r"holds 'apple' images, not 'pear'.*--fruits pear --overwrite"):
        npz_format.read_npz(path, "pear", "A")
