"""Readers of the three Quick, Draw! formats, on the bundled real sample (and bad lines made here)."""
import inspect
import json
import shutil
import tracemalloc

import numpy as np
import pytest

from fruitgan.data import quickdraw_formats as qf
SIMPLE_APPLE = "sample/simplified/apple.ndjson"
RAW_APPLE = "sample/raw/apple.ndjson"
BITMAP_APPLE = "sample/bitmap/apple.npy"


def drawings(items):
    return [d for d in items if isinstance(d, qf.Drawing)]


def test_formats_are_detected_from_content_not_name(workdir):
    raw = workdir / "rawData"
    assert qf.detect_format(raw / SIMPLE_APPLE).format == qf.SIMPLIFIED
    assert qf.detect_format(raw / RAW_APPLE).format == qf.RAW
    info = qf.detect_format(raw / BITMAP_APPLE)
    assert (info.format, info.rows) == (qf.BITMAP, 1000)
    # Misleading names: raw data called "simplified", a bitmap without .npy.
    shutil.copy(raw / RAW_APPLE, workdir / "simplified_apple.txt")
    shutil.copy(raw / BITMAP_APPLE, workdir / "apple.ndjson")
    assert qf.detect_format(workdir / "simplified_apple.txt").format == qf.RAW
    assert qf.detect_format(workdir / "apple.ndjson").format == qf.BITMAP


def test_simplified_sample_parses_into_strokes(workdir):
    items = list(qf.iter_drawings(workdir / "rawData" / SIMPLE_APPLE, "apple"))
    found = drawings(items)
    assert len(items) == len(found) == 100  # the real sample is clean (its first 100 apples)
    assert len({d.key_id for d in found}) == 100
    for d in found:
        assert d.source_format == qf.SIMPLIFIED and d.n_strokes >= 1
        for stroke in d.strokes:
            assert stroke.ndim == 2 and stroke.shape[1] == 2
            assert stroke.min() >= 0 and stroke.max() <= 255


def test_raw_sample_parses_and_holds_the_simplified_drawings(workdir):
    raw = drawings(qf.iter_drawings(workdir / "rawData" / RAW_APPLE, "apple"))
    simple = drawings(qf.iter_drawings(workdir / "rawData" / SIMPLE_APPLE, "apple"))
    # The same drawings in both files, by key_id: why key_id de-duplication is needed (ATTRIBUTION.md:
    # apple's raw drawings are among its 100 simplified ones; pear's 25 simplified are among its raw ones).
    assert 0 < len(raw) < len(simple) and {d.key_id for d in raw} <= {d.key_id for d in simple}
    raw_pear = drawings(qf.iter_drawings(workdir / "rawData" / "sample/raw/pear.ndjson", "pear"))
    simple_pear = drawings(qf.iter_drawings(workdir / "rawData" / "sample/simplified/pear.ndjson", "pear"))
    assert len(raw_pear) > len(simple_pear) and {d.key_id for d in simple_pear} <= {d.key_id for d in raw_pear}
    assert max(float(s.max()) for d in raw for s in d.strokes) > 255  # screen pixels, not 0-255
    assert all(d.source_format == qf.RAW for d in raw)


def test_bitmaps_are_memory_mapped_and_streamed(workdir):
    path = workdir / "rawData" / BITMAP_APPLE
    data = qf.open_bitmaps(path)
    assert isinstance(data, np.memmap) and data.shape == (1000, 784) and data.dtype == np.uint8
    stream = qf.iter_bitmaps(path)
    assert inspect.isgenerator(stream)
    first = next(stream)
    assert first.shape == (28, 28) and np.array_equal(first.ravel(), data[0])
    assert sum(1 for _ in stream) == 999
    chunks = list(qf.iter_bitmap_chunks(path, rows=300))
    assert [start for start, _ in chunks] == [0, 300, 600, 900] and len(chunks[-1][1]) == 100


GOOD = {"word": "apple", "key_id": "1", "recognized": True, "drawing": [[[0, 10, 255], [5, 6, 7]]]}


@pytest.mark.parametrize("line, reason", [
    (b'{"word": "apple", "drawing": [[[1,2],[3,4]]', qf.SKIP_JSON),
    (b"not json at all", qf.SKIP_JSON),
    (b"[1, 2, 3]", qf.SKIP_NOT_RECORD),
    (json.dumps({"word": "apple", "key_id": "1"}).encode(), qf.SKIP_NO_DRAWING),
    (json.dumps({**GOOD, "drawing": []}).encode(), qf.SKIP_EMPTY),
    (json.dumps({**GOOD, "drawing": [[[], []]]}).encode(), qf.SKIP_EMPTY),
    (json.dumps({**GOOD, "drawing": [[[1, 2, 3], [4, 5]]]}).encode(), qf.SKIP_LENGTHS),
    (json.dumps({**GOOD, "drawing": [[[1, -2], [4, 5]]]}).encode(), qf.SKIP_RANGE),
    (json.dumps({**GOOD, "drawing": [[[1, 256], [4, 5]]]}).encode(), qf.SKIP_RANGE),
    (json.dumps({**GOOD, "drawing": [[[1, "a"], [4, 5]]]}).encode(), qf.SKIP_NON_NUMERIC),
    (json.dumps({**GOOD, "drawing": [[["1", "2"], [4, 5]]]}).encode(), qf.SKIP_NON_NUMERIC),
    (json.dumps({**GOOD, "drawing": [[[1, None], [4, 5]]]}).encode(), qf.SKIP_NON_NUMERIC),
    (json.dumps({**GOOD, "drawing": [[[1, 2], [4, 5], [0, 1]]]}).encode(), qf.SKIP_STRUCTURE),
    (json.dumps({**GOOD, "drawing": "strokes"}).encode(), qf.SKIP_STRUCTURE),
    (json.dumps({**GOOD, "word": "banana"}).encode(), qf.SKIP_WORD),
    (None, qf.SKIP_LONG_LINE),
])
def test_bad_simplified_lines_are_skips_with_a_reason(line, reason):
    result = qf.parse_line(line, qf.SIMPLIFIED, "apple", line_no=7)
    assert result == qf.Skip(reason, 7)


def test_good_line_and_word_case_are_accepted():
    result = qf.parse_line(json.dumps({**GOOD, "word": "Apple"}).encode(), qf.SIMPLIFIED, "apple")
    assert isinstance(result, qf.Drawing) and result.recognized is True and result.key_id == "1"
    no_id = {k: v for k, v in GOOD.items() if k != "key_id"}
    assert qf.parse_record(no_id, qf.SIMPLIFIED).key_id is None  # never taken for a duplicate
    assert result.strokes[0].tolist() == [[0, 5], [10, 6], [255, 7]]


def test_raw_lines_are_not_range_checked_but_must_be_finite():
    big = {**GOOD, "drawing": [[[-40, 900.5], [1200, 3], [0, 17]]]}
    assert isinstance(qf.parse_line(json.dumps(big).encode(), qf.RAW, "apple"), qf.Drawing)
    nan = {**GOOD, "drawing": [[[1.0, float("nan"), 2.0], [1, 2, 3], [0, 1, 2]]]}
    assert qf.parse_record(nan, qf.RAW, "apple") == qf.Skip(qf.SKIP_NON_NUMERIC)
    inf = {**GOOD, "drawing": [[[1.0, 2.0], [float("inf"), 2.0], [0, 1]]]}
    assert qf.parse_record(inf, qf.RAW, "apple") == qf.Skip(qf.SKIP_NON_NUMERIC)
    two_lists = {**GOOD, "drawing": [[[1, 2], [3, 4]]]}  # a simplified stroke inside a raw file
    assert qf.parse_record(two_lists, qf.RAW, "apple") == qf.Skip(qf.SKIP_STRUCTURE)


def test_over_long_lines_are_skipped_without_loading_them(tmp_path):
    path = tmp_path / "long.ndjson"
    good = json.dumps(GOOD).encode()
    path.write_bytes(good + b"\n" + b"x" * 5000 + b"\n" + good + b"\n\n")
    lines = list(qf.iter_lines(path, max_line_bytes=1000))
    assert [n for n, _ in lines] == [1, 2, 3]  # blank line 4 is dropped
    assert lines[1][1] is None and lines[0][1].strip() == good and lines[2][1].strip() == good


def test_quality_presets_filter_by_strokes_and_recognition():
    one = qf.parse_record(GOOD, qf.SIMPLIFIED)
    many = qf.parse_record({**GOOD, "drawing": [[[1, 2], [3, 4]]] * 8}, qf.SIMPLIFIED)
    unrecognised = qf.parse_record({**GOOD, "recognized": False}, qf.SIMPLIFIED)
    presets = qf.QUALITY_PRESETS
    assert presets["all"].reject_reason(unrecognised) is None
    assert presets["standard"].reject_reason(unrecognised) == "quality: not recognized by the game"
    assert presets["simple"].reject_reason(many) == "quality: too many strokes"
    assert presets["detailed"].reject_reason(one) == "quality: too few strokes"
    assert presets["detailed"].reject_reason(many) is None
    assert "strokes" in presets["standard"].rule()


def test_fruit_from_name_matches_whole_words_only():
    assert qf.fruit_from_name("full_simplified_apple.ndjson") == "apple"
    assert qf.fruit_from_name("full_numpy_bitmap_apple.npy") == "apple"
    assert qf.fruit_from_name("Grapes (1).ndjson") == "grapes"
    assert qf.fruit_from_name("full_raw_pineapple.ndjson") is None
    assert qf.fruit_from_name("notes.txt") is None


def test_user_files_replace_the_sample_and_odd_files_are_noted(workdir):
    raw = workdir / "rawData"
    shutil.copy(raw / RAW_APPLE, raw / "full_raw_apple.ndjson")
    (raw / "notes.txt").write_text("my notes\n")
    (raw / "table.csv").write_text("a,b\n1,2\n")
    (raw / "photo_apple.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40)
    (raw / "banana.ndjson").write_bytes(b"")
    (raw / "full_raw_pineapple.ndjson").write_bytes((raw / RAW_APPLE).read_bytes())
    scan = qf.scan_raw_data(raw)
    assert [f.path.name for f in scan.files_for("apple")] == ["full_raw_apple.ndjson"]
    assert {f.format for f in scan.files_for("banana")} == {qf.SIMPLIFIED, qf.RAW, qf.BITMAP}  # sample kept
    notes = dict(scan.notes)
    assert notes["banana.ndjson"] == qf.NOTE_EMPTY
    assert notes["notes.txt"] == notes["table.csv"] == notes["photo_apple.jpg"] == qf.NOTE_NOT_QUICKDRAW
    assert notes["full_raw_pineapple.ndjson"] == qf.NOTE_NO_FRUIT
    assert scan.note_counts()[qf.NOTE_NOT_QUICKDRAW] == 3
    assert "README.md" not in notes


def test_auto_formats_prefer_strokes_and_flags_override(workdir):
    raw = workdir / "rawData"
    sample_apple = qf.scan_raw_data(raw).files_for("apple")
    auto = qf.select_files(sample_apple)
    assert [f.format for f in auto] == [qf.SIMPLIFIED, qf.RAW]  # simplified first: it wins duplicates
    assert [f.format for f in qf.select_files(sample_apple, [qf.BITMAP])] == [qf.BITMAP]
    assert [f.format for f in qf.select_files(sample_apple, [qf.RAW, qf.BITMAP])] == [qf.RAW, qf.BITMAP]
    shutil.copy(raw / BITMAP_APPLE, raw / "full_numpy_bitmap_apple.npy")
    only_bitmap = qf.scan_raw_data(raw).files_for("apple")
    assert [f.format for f in qf.select_files(only_bitmap)] == [qf.BITMAP]  # no strokes: bitmaps


def test_streaming_reader_is_a_generator_with_flat_memory(workdir, tmp_path):
    """A multi-MB file goes through the reader while far less than its size is ever allocated."""
    lines = (workdir / "rawData" / RAW_APPLE).read_bytes().splitlines()
    big = tmp_path / "big_apple.ndjson"
    with open(big, "wb") as fh:
        for i in range(40):
            fh.write(b"\n".join(lines) + b"\n")
    size = big.stat().st_size
    assert size > 3_500_000
    stream = qf.iter_drawings(big, "apple")
    assert inspect.isgenerator(stream)
    tracemalloc.start()
    try:
        kept = sum(isinstance(item, qf.Drawing) for item in stream)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept == 40 * len(lines)
    assert peak < size / 10, f"peak {peak} bytes while streaming a {size}-byte file"


def test_line_chunks_are_bounded(workdir):
    chunks = list(qf.iter_line_chunks(workdir / "rawData" / RAW_APPLE, max_lines=10))
    assert [len(c.lines) for c in chunks] == [10, 10, 10, 7]
    assert [c.first_line_no for c in chunks] == [1, 11, 21, 31]
    small = list(qf.iter_line_chunks(workdir / "rawData" / RAW_APPLE, max_lines=100, max_bytes=10_000))
    assert len(small) > 1  # the byte cap splits long raw lines into several chunks
