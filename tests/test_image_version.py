"""image_version.py: what FruitWriter writes, scan_image_versions finds and read_version reads back.

The pixels are REAL Quick, Draw! apples (rows of the bundled rawData/sample/bitmap/apple.npy, 28x28).
"""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fruitgan.data import image_version as iv
from fruitgan.data import stroke_render as sr
from fruitgan.util.user_io import UserError

BITMAP = Path(__file__).resolve().parent.parent / "rawData" / "sample" / "bitmap" / "apple.npy"


def apples(count: int) -> np.ndarray:
    return np.load(BITMAP, allow_pickle=False)[:count].reshape(count, 28, 28)


def png(pixels: np.ndarray) -> bytes:
    return sr.encode_png(Image.fromarray(pixels))


def test_a_version_is_invisible_until_published_then_reads_back(tmp_path):
    images = apples(3)
    writer = iv.FruitWriter(tmp_path, "apple", "A")
    writer.write_real(0, png(images[0]))
    writer.write_real(1, png(images[1]))
    writer.write_augmented(2, 1, png(images[2]))
    assert iv.scan_image_versions(tmp_path) == []                            # the partial folder is hidden
    assert iv.existing_version_fruits(tmp_path, "A", ["apple", "pear"]) == []
    folder = writer.publish(iv.version_metadata("apple", "A", 28, 2, 1, quality="standard"))
    assert folder == iv.version_folder(tmp_path, "apple", "A")
    assert sorted(p.name for p in folder.iterdir()) == ["aug_000002_from_000001.png", "metadata.json",
                                                       "real_000000.png", "real_000001.png"]
    assert [p.name for p in folder.parent.iterdir()] == ["versionA"]        # no partial folder left
    (found,) = iv.scan_image_versions(tmp_path)
    assert (found.fruit, found.version, found.complete, found.image_count, found.resolution) == ("apple", "A", True,
                                                                                               3, 28)
    assert iv.existing_version_fruits(tmp_path, "A", ["apple", "pear"]) == ["apple"]
    assert iv.next_free_version(tmp_path) == "1"                              # "A" is not a number

    back = iv.read_version(tmp_path, "apple", "A", progress=False)
    assert np.array_equal(back.images, images)
    assert back.source_index.tolist() == [0, 1, 1] and back.augmented.tolist() == [False, False, True]
    assert back.metadata["count"] == 3 and back.metadata["real_count"] == 2 and back.metadata["quality"] == "standard"
    assert back.metadata["colour"] == iv.COLOUR and back.metadata["tool"] == "rawDataToImage.py"


def test_reading_a_missing_version_says_how_to_make_it(tmp_path):
    with pytest.raises(UserError, match=r"imageData/pear/versionB/ does not exist.*rawDataToImage.py --version B"):
        iv.read_version(tmp_path, "pear", "B", progress=False)
