"""Rendering: known strokes land on known pixels; white on black; anti-aliased; augmentation seeded."""
import io

import numpy as np
import pytest
from PIL import Image

from fruitgan.data import quickdraw_formats as qf
from fruitgan.data import stroke_render as sr
def stroke(*points):
    return np.array(points, dtype=np.float64)  # (n, 2) x, y


def ink_box(img):
    rows = np.nonzero(img.max(axis=1))[0]
    cols = np.nonzero(img.max(axis=0))[0]
    return rows[0], rows[-1], cols[0], cols[-1]


def test_horizontal_line_lights_the_middle_row_on_black():
    img = sr.image_array(sr.render_strokes([stroke((0, 128), (255, 128))], 32))
    assert img.shape == (32, 32) and img.dtype == np.uint8
    middle = img[15:17].max(axis=0)
    assert middle[4:28].min() >= 200  # bright across the middle...
    assert img[:12].max() == 0 and img[20:].max() == 0  # ...background exactly 0 elsewhere
    assert img[:, :1].max() == 0 and img[:, -1:].max() == 0  # margin left and right


def test_vertical_line_lights_the_middle_column():
    img = sr.image_array(sr.render_strokes([stroke((40, 0), (40, 200))], 32))
    assert img[4:28, 15:17].max(axis=1).min() >= 200
    assert img[:, :12].max() == 0 and img[:, 20:].max() == 0


def test_edges_are_anti_aliased():
    img = sr.image_array(sr.render_strokes([stroke((0, 0), (255, 90))], 64))  # a slanted line
    grey = (img > 0) & (img < 255)
    assert grey.sum() > 20 and (img == 255).sum() > 20


def test_drawing_is_centred_with_aspect_kept():
    # A small 2:1 rectangle far from the origin: centred and enlarged, still twice as wide as tall.
    rect = stroke((100, 100), (140, 100), (140, 120), (100, 120), (100, 100))
    img = sr.image_array(sr.render_strokes([rect], 64))
    top, bottom, left, right = ink_box(img)
    assert abs((top + bottom) / 2 - 31.5) <= 1 and abs((left + right) / 2 - 31.5) <= 1
    width, height = right - left + 1, bottom - top + 1
    assert 1.8 < width / height < 2.2
    assert left >= 2 and right <= 61  # small margin, nearly filling the frame
    assert left <= 5


def test_stroke_width_scales_with_resolution():
    line = [stroke((0, 50), (255, 50))]
    thickness = {}
    for res in (32, 128):
        img = sr.image_array(sr.render_strokes(line, res))
        thickness[res] = (img[:, res // 2] > 127).sum() / res  # as a fraction of the side
    assert thickness[32] == pytest.approx(thickness[128], rel=0.35)


def test_single_point_is_a_centred_dot():
    img = sr.image_array(sr.render_strokes([stroke((7, 9))], 28))
    top, bottom, left, right = ink_box(img)
    assert img.max() > 100 and bottom - top <= 3 and right - left <= 3
    assert abs((top + bottom) / 2 - 13.5) <= 1 and abs((left + right) / 2 - 13.5) <= 1


def test_real_drawing_renders_like_googles_bitmaps(workdir):
    """Same convention and similar amount of ink as the real 28x28 bitmaps of the sample."""
    path = workdir / "rawData" / "sample" / "simplified" / "apple.ndjson"
    renderer = sr.StrokeRenderer(28)
    ours = np.stack([sr.image_array(renderer.render(d.strokes))
                     for d in qf.iter_drawings(path, "apple") if isinstance(d, qf.Drawing)])
    google = np.load(workdir / "rawData" / "sample" / "bitmap" / "apple.npy")
    assert np.median(ours[:, 0, :]) == 0 and np.median(ours[:, :, 0]) == 0  # black borders
    assert ours.mean() == pytest.approx(google.mean(), rel=0.5)


def test_bitmap_rows_are_resized():
    row = np.zeros(784, dtype=np.uint8)
    row.reshape(28, 28)[10:18, 10:18] = 255  # a white square in the middle
    same = sr.image_array(sr.render_bitmap(row, 28))
    assert np.array_equal(same, row.reshape(28, 28))
    big = sr.image_array(sr.render_bitmap(row, 56))
    assert big.shape == (56, 56) and big[28, 28] > 200 and big[0, 0] == 0 and big[5, 50] == 0


def test_png_encoding_round_trips():
    img = sr.render_strokes([stroke((0, 0), (255, 255))], 40)
    data = sr.encode_png(img)
    back = Image.open(io.BytesIO(data))
    assert back.mode == "L" and back.size == (40, 40)
    assert np.array_equal(np.asarray(back), sr.image_array(img))


def test_augmentation_is_seeded_and_changes_the_drawing(workdir):
    path = workdir / "rawData" / "sample" / "simplified" / "pear.ndjson"
    drawing = next(d for d in qf.iter_drawings(path, "pear") if isinstance(d, qf.Drawing))
    renderer = sr.StrokeRenderer(32)
    plain = sr.image_array(renderer.render(drawing.strokes))

    def augmented(seed):
        return sr.image_array(sr.render_augmented_strokes(renderer, drawing.strokes, np.random.default_rng(seed)))

    assert np.array_equal(augmented(3), augmented(3))
    assert not np.array_equal(augmented(3), augmented(4))
    assert not np.array_equal(augmented(3), plain)
    still = sr.AugmentSettings(rotation_deg=0, zoom_min=1, zoom_max=1, stretch=0, shift_fraction=0,
                               stroke_shift=0, point_jitter=0)
    unchanged = sr.render_augmented_strokes(renderer, drawing.strokes, np.random.default_rng(0), still)
    assert np.array_equal(sr.image_array(unchanged), plain)  # all settings at zero: the real drawing


def test_augmentation_moves_the_drawing_within_its_settings():
    line = [stroke((0, 128), (255, 128))]
    settings = sr.AugmentSettings(rotation_deg=0, zoom_min=0.5, zoom_max=0.5, stretch=0, shift_fraction=0,
                                  stroke_shift=0, point_jitter=0)
    moved, placement = sr.augment_strokes(line, np.random.default_rng(0), settings)
    assert placement == sr.Placement(zoom=0.5)
    img = sr.image_array(sr.StrokeRenderer(32).render(moved, placement))
    _, _, left, right = ink_box(img)
    assert 12 <= right - left + 1 <= 18  # half the usual length
    assert settings.to_dict()["zoom_min"] == 0.5


def test_bitmap_augmentation_is_seeded():
    row = np.zeros(784, dtype=np.uint8)
    row.reshape(28, 28)[6:22, 12:16] = 255
    a = sr.image_array(sr.render_augmented_bitmap(row, 28, np.random.default_rng(1)))
    b = sr.image_array(sr.render_augmented_bitmap(row, 28, np.random.default_rng(1)))
    c = sr.image_array(sr.render_augmented_bitmap(row, 28, np.random.default_rng(2)))
    assert np.array_equal(a, b) and not np.array_equal(a, c) and a.max() > 100
