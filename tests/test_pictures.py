"""pictures.py: the one uint8 <-> [-1, 1] pixel map and the one image grid."""
import numpy as np
import torch

from fruitgan.util import pictures
def every_pixel_value() -> np.ndarray:
    return np.arange(256, dtype=np.uint8).reshape(1, 16, 16)


def test_every_pixel_value_survives_the_round_trip():
    values = pictures.to_unit_range(every_pixel_value())
    assert values.shape == (1, 1, 16, 16) and values.dtype == torch.float32
    assert values.min() == -1.0 and values.max() == 1.0
    assert np.array_equal(pictures.to_uint8(values), every_pixel_value())
    assert torch.equal(pictures.to_pixels(values), torch.from_numpy(every_pixel_value()).unsqueeze(1))


def test_out_of_range_values_are_clamped_and_the_middle_rounds_to_even():
    images = torch.tensor([-3.0, -1.0, 1 / 127.5 - 1, 0.0, 1.0, 7.0])      # the third is one pixel step above -1
    assert pictures.to_pixels(images).tolist() == [0, 0, 1, 128, 255, 255]   # 0.0 -> 127.5 -> 128 (even)


def test_grid_places_tiles_row_major_with_gutters_and_enlarges():
    tiles = np.stack([np.full((2, 2), 10 * (i + 1), dtype=np.uint8) for i in range(3)])   # 3 tiles, 2 columns
    grid = np.asarray(pictures.image_grid(tiles, columns=2, pad=1, gutter=7))
    assert grid.shape == (2 * 3 + 1, 2 * 3 + 1)
    assert (grid[1:3, 1:3] == 10).all() and (grid[1:3, 4:6] == 20).all() and (grid[4:6, 1:3] == 30).all()
    assert (grid[4:6, 4:6] == 7).all() and (grid[0] == 7).all() and (grid[:, 3] == 7).all()   # gutters, empty cell
    big = np.asarray(pictures.image_grid(tiles, columns=2, pad=1, gutter=7, min_tile=5))
    assert big.shape == (3 * 7, 3 * 7)                                       # whole factor ceil(5 / 2) = 3
    assert np.array_equal(big[::3, ::3], grid)
