"""Reading Quick, Draw! data: simplified ndjson, raw ndjson and numpy bitmaps, streamed.

Formats (recognised from the content, never from the file name):
  simplified ndjson  one JSON object a line; ``drawing`` = [[x...], [y...]] per stroke, ints 0-255
  raw ndjson         same, but [[x...], [y...], [t...]] per stroke: screen pixels and milliseconds
  numpy bitmap .npy  uint8 array (N, 784): each row a 28x28 image, white strokes on black

Everything is streamed (ndjson a bounded line at a time, bitmaps memory-mapped), so memory stays flat
whatever the file size. Bad records never raise: they come back as ``Skip(reason)``.

User downloads directly in rawData/ whose name holds the fruit as a word (``full_simplified_apple.ndjson``)
replace the bundled rawData/sample/ for that fruit; other fruits keep using the sample."""
from __future__ import annotations

import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

try:  # orjson parses these lines ~4x faster than json; the standard library is the fallback
    import orjson as _fast_json
    _loads = _fast_json.loads
    _JSON_ERRORS: Tuple[type, ...] = (_fast_json.JSONDecodeError, ValueError, TypeError)
except ImportError:  # pragma: no cover - depends on the environment
    import json as _std_json
    _loads = _std_json.loads
    _JSON_ERRORS = (ValueError, TypeError, RecursionError)

from fruitgan.util.safe_files import FRUITS, list_folder, not_regular, open_regular, read_npy_header
from fruitgan.util.user_io import UserError

SIMPLIFIED = "simplified"
RAW = "raw"
BITMAP = "bitmap"
FORMATS = (SIMPLIFIED, RAW, BITMAP)
STROKE_FORMATS = (SIMPLIFIED, RAW)
AUTO = "auto"  # strokes when a fruit has any stroke file, bitmaps only when it has none

SIMPLIFIED_MAX = 255  # simplified coordinates lie in 0..255
BITMAP_PIXELS = 784  # 28 * 28
NPY_MAGIC = b"\x93NUMPY"
# Far above the largest real Quick, Draw! bitmap file (~350k drawings); a bigger claim is not a real file.
MAX_BITMAP_ROWS = 50_000_000
MAX_LINE_BYTES = 8 * 1024 * 1024  # a longer "line" is not a drawing (and is never held in memory whole)
DETECT_MAX_LINES = 200  # lines probed to recognise an ndjson file
CHUNK_LINES = 128  # lines per chunk handed to a worker
CHUNK_BYTES = 1024 * 1024  # ... or fewer when the lines are long (raw drawings)
BITMAP_CHUNK_ROWS = 256
IGNORED_NAMES = {"readme.md", "attribution.md"}  # documentation beside the data, not data
SAMPLE_DIR = "sample"  # rawData/sample/<format>/: the bundled sample
SPECIAL_FIX = "put the downloaded Quick, Draw! file there instead, or remove it"

# Reasons a record is skipped (keys of the "skipped" counters).
SKIP_JSON = "malformed JSON line"
SKIP_NOT_RECORD = "line is not a JSON object"
SKIP_NO_DRAWING = "missing 'drawing'"
SKIP_EMPTY = "empty strokes"
SKIP_STRUCTURE = "stroke is not a list of coordinate lists"
SKIP_LENGTHS = "x/y lists of different lengths"
SKIP_NON_NUMERIC = "non-numeric or non-finite coordinates"
SKIP_RANGE = "coordinates outside 0-255"
# Raw coordinates are screen pixels; far beyond (e.g. +-1e308) a bounding box would overflow when scaled.
RAW_COORD_MAX = 1_000_000
SKIP_RAW_RANGE = f"coordinates beyond +-{RAW_COORD_MAX}"
SKIP_WORD = "word is not the file's fruit"
SKIP_LONG_LINE = "line too long"
SKIP_DUPLICATE = "duplicate key_id"
SKIP_BLANK_BITMAP = "blank bitmap"

# Notes about whole files (keys of the "file notes" counters).
NOTE_EMPTY = "empty file"
NOTE_NOT_QUICKDRAW = "not Quick, Draw! data (skipped)"
NOTE_BAD_NPY = "unsupported .npy (need N x 784 uint8)"
NOTE_UNREADABLE = "unreadable file"
NOTE_NO_FRUIT = "no known fruit in the file name"


# ----------------------------------------------------------------------------------------- records

@dataclass
class Drawing:
    """One valid drawing. strokes: list of float64 arrays (n_points, 2) holding x, y.
    key_id: Google's id (None when the line has none: such drawings are never de-duplicated)."""

    key_id: Optional[str]
    strokes: List[np.ndarray]
    recognized: Optional[bool]
    source_format: str

    @property
    def n_strokes(self) -> int:
        return len(self.strokes)


@dataclass(frozen=True)
class Skip:
    """A record that was not used, and why (one of the SKIP_* reasons)."""

    reason: str
    line_no: int = 0


@dataclass(frozen=True)
class QualityPreset:
    """Which drawings a dataset keeps, chosen mainly by number of strokes."""

    name: str
    min_strokes: int
    max_strokes: Optional[int]  # None: no upper limit
    require_recognized: bool  # keep only drawings the game's classifier recognised (unknown passes)
    description: str

    def rule(self) -> str:
        strokes = (f"{self.min_strokes}+ strokes" if self.max_strokes is None
                   else f"{self.min_strokes}-{self.max_strokes} strokes")
        return f"{strokes}{', recognized by the game' if self.require_recognized else ''}"

    def reject_reason(self, drawing: Drawing) -> Optional[str]:
        n = drawing.n_strokes
        if self.require_recognized and drawing.recognized is False:
            return "quality: not recognized by the game"
        if n < self.min_strokes:
            return "quality: too few strokes"
        if self.max_strokes is not None and n > self.max_strokes:
            return "quality: too many strokes"
        return None


QUALITY_PRESETS: Dict[str, QualityPreset] = {p.name: p for p in (
    QualityPreset("all", 1, None, False, "every valid drawing, recognised or not"),
    QualityPreset("standard", 1, 20, True, "recognised drawings of 1-20 strokes (drops scribbles)"),
    QualityPreset("simple", 1, 5, True, "recognised drawings of 1-5 strokes: clean outlines"),
    QualityPreset("detailed", 4, 40, True, "recognised drawings of 4-40 strokes: more inner detail"),
)}
DEFAULT_QUALITY = "standard"


# ----------------------------------------------------------------------------------------- parsing

_NUMBER_TYPES = (int, float)


def _check_coordinates(values, fmt: str) -> Optional[str]:
    """None if ``values`` is a usable coordinate list, else the reason it is not. C builtins, not numpy (several
    times faster on a few dozen numbers): min/max raise TypeError on mixed types; the sum catches NaN/inf."""
    if not isinstance(values, list):
        return SKIP_STRUCTURE
    if not values:
        return None
    try:
        low, high, total = min(values), max(values), sum(values)
        if (type(low) not in _NUMBER_TYPES or type(high) not in _NUMBER_TYPES or type(total) not in _NUMBER_TYPES
                or not math.isfinite(total)):
            return SKIP_NON_NUMERIC  # all strings, all lists, booleans, NaN or inf ...
    except (TypeError, OverflowError):  # mixed types; an integer too large for a float
        return SKIP_NON_NUMERIC
    if fmt == SIMPLIFIED and (low < 0 or high > SIMPLIFIED_MAX):
        return SKIP_RANGE
    if low < -RAW_COORD_MAX or high > RAW_COORD_MAX:
        return SKIP_RAW_RANGE
    return None


def parse_record(record, fmt: str, fruit: Optional[str] = None, line_no: int = 0) -> Union[Drawing, Skip]:
    """Validate one decoded ndjson object of format ``fmt`` (simplified or raw)."""
    if not isinstance(record, dict):
        return Skip(SKIP_NOT_RECORD, line_no)
    word = record.get("word")
    if fruit is not None and word is not None and str(word).strip().lower() != fruit:
        return Skip(SKIP_WORD, line_no)
    drawing = record.get("drawing")
    if drawing is None:
        return Skip(SKIP_NO_DRAWING, line_no)
    if not isinstance(drawing, list):
        return Skip(SKIP_STRUCTURE, line_no)
    lists_per_stroke = 2 if fmt == SIMPLIFIED else 3
    all_x, all_y, lengths = [], [], []
    for stroke in drawing:
        if not isinstance(stroke, list) or len(stroke) != lists_per_stroke:
            return Skip(SKIP_STRUCTURE, line_no)
        xs, ys = stroke[0], stroke[1]
        reason = _check_coordinates(xs, fmt) or _check_coordinates(ys, fmt)
        if reason:
            return Skip(reason, line_no)
        if len(xs) != len(ys):
            return Skip(SKIP_LENGTHS, line_no)
        if not xs:
            return Skip(SKIP_EMPTY, line_no)
        all_x += xs
        all_y += ys
        lengths.append(len(xs))
    if not lengths:
        return Skip(SKIP_EMPTY, line_no)
    points = np.empty((len(all_x), 2), dtype=np.float64)  # one array for the drawing, strokes are views
    points[:, 0] = all_x
    points[:, 1] = all_y
    strokes = np.split(points, np.cumsum(lengths)[:-1])
    key_id, recognized = record.get("key_id"), record.get("recognized")
    return Drawing(key_id=str(key_id) if key_id is not None else None, strokes=strokes,
                   recognized=recognized if isinstance(recognized, bool) else None, source_format=fmt)


def parse_line(line: Optional[bytes], fmt: str, fruit: Optional[str] = None, line_no: int = 0) -> Union[Drawing, Skip]:
    """Decode and validate one ndjson line (``None`` stands for a line that was too long)."""
    if line is None:
        return Skip(SKIP_LONG_LINE, line_no)
    try:
        record = _loads(line)
    except _JSON_ERRORS:
        return Skip(SKIP_JSON, line_no)
    return parse_record(record, fmt, fruit, line_no)


def simplified_line(strokes: Sequence[np.ndarray], word: str, key_id: str, recognized: bool = True) -> str:
    """One line of Google's simplified format for ``strokes`` ((n, 2) x, y arrays in any unit): fitted into
    0-255 with the aspect kept, rounded to integers. For making synthetic files (benchmarks, tests); every
    reader here parses it back."""
    import json
    points = np.concatenate([np.asarray(s, dtype=np.float64) for s in strokes])
    low = points.min(axis=0)
    span = float((points.max(axis=0) - low).max()) or 1.0
    drawing = []
    for s in strokes:
        xy = np.clip(np.rint((np.asarray(s, dtype=np.float64) - low) / span * SIMPLIFIED_MAX), 0, SIMPLIFIED_MAX)
        drawing.append([xy[:, 0].astype(int).tolist(), xy[:, 1].astype(int).tolist()])
    record = {"word": word, "countrycode": "XX", "timestamp": "synthetic", "recognized": bool(recognized),
              "key_id": str(key_id), "drawing": drawing}
    return json.dumps(record, separators=(",", ":"))


def _stroke_format(record) -> Optional[str]:
    """simplified / raw from the shape of the first stroke of a decoded record, else None."""
    if not isinstance(record, dict) or not isinstance(record.get("drawing"), list) or not record["drawing"]:
        return None
    stroke = record["drawing"][0]
    if isinstance(stroke, list) and all(isinstance(part, list) for part in stroke):
        return {2: SIMPLIFIED, 3: RAW}.get(len(stroke))
    return None


# ----------------------------------------------------------------------------------------- streaming

def iter_lines(path: Path, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[Tuple[int, Optional[bytes]]]:
    """Yield (line number from 1, line bytes) for each non-blank line; ``None`` for an over-long line.
    The bounded ``readline`` keeps even a file with no newline at all from sitting in memory whole."""
    with open_regular(path, SPECIAL_FIX) as fh:
        pieces = iter(lambda: fh.readline(max_line_bytes), b"")
        for line_no, line in enumerate(pieces, 1):
            if len(line) >= max_line_bytes and not line.endswith(b"\n"):
                for rest in pieces:  # drain the rest of the over-long line in bounded pieces
                    if rest.endswith(b"\n"):
                        break
                yield line_no, None
            elif line.strip():
                yield line_no, line


@dataclass
class LineChunk:
    """A batch of consecutive lines for one worker task."""

    first_line_no: int
    lines: List[Tuple[int, Optional[bytes]]]


def iter_line_chunks(path: Path, max_lines: int = CHUNK_LINES, max_bytes: int = CHUNK_BYTES) -> Iterator[LineChunk]:
    """Group iter_lines into chunks of at most ``max_lines`` lines / about ``max_bytes`` bytes."""
    batch: List[Tuple[int, Optional[bytes]]] = []
    size = 0
    for line_no, line in iter_lines(path):
        batch.append((line_no, line))
        size += len(line) if line else 0
        if len(batch) >= max_lines or size >= max_bytes:
            yield LineChunk(batch[0][0], batch)
            batch, size = [], 0
    if batch:
        yield LineChunk(batch[0][0], batch)


def iter_drawings(path: Path, fruit: Optional[str] = None, fmt: Optional[str] = None) -> Iterator[Union[Drawing, Skip]]:
    """Stream one ndjson file: a Drawing or a Skip per non-blank line (format detected if not given)."""
    if fmt is None:
        info = detect_format(path)
        if info.format not in STROKE_FORMATS:
            return
        fmt = info.format
    for line_no, line in iter_lines(path):
        yield parse_line(line, fmt, fruit, line_no)


def _bitmap_rows(path: Path) -> int:
    """Rows an (N, 784) uint8 .npy file holds, from its header; ValueError when it is unreadable, another
    shape or claims more rows than the file holds or MAX_BITMAP_ROWS (nothing is mapped or allocated)."""
    try:
        with open_regular(path, SPECIAL_FIX) as fh:
            shape, dtype, offset = read_npy_header(fh, path)
            size = os.fstat(fh.fileno()).st_size
    except UserError as exc:
        raise ValueError(str(exc)) from None
    if len(shape) != 2 or shape[1] != BITMAP_PIXELS or dtype != np.uint8:
        raise ValueError(f"{path}: {dtype} {shape}, not N x {BITMAP_PIXELS} uint8")
    if not 0 <= shape[0] <= MAX_BITMAP_ROWS or offset + shape[0] * BITMAP_PIXELS > size:
        raise ValueError(f"{path}: header claims {shape[0]} rows, the file holds {(size - offset) // BITMAP_PIXELS}")
    return int(shape[0])


def open_bitmaps(path: Path) -> np.ndarray:
    """Memory-mapped (N, 784) uint8 view of a numpy-bitmap file, its header checked first (ValueError)."""
    _bitmap_rows(path)
    return np.load(path, mmap_mode="r", allow_pickle=False)


def iter_bitmap_chunks(path: Path, rows: int = BITMAP_CHUNK_ROWS) -> Iterator[Tuple[int, np.ndarray]]:
    """Yield (first row index, copy of up to ``rows`` rows (k, 784) uint8) from a memory-mapped .npy."""
    data = open_bitmaps(path)
    for start in range(0, data.shape[0], rows):
        yield start, np.array(data[start:start + rows])


def iter_bitmaps(path: Path) -> Iterator[np.ndarray]:
    """Stream a numpy-bitmap file one (28, 28) uint8 image at a time."""
    for _, block in iter_bitmap_chunks(path):
        for row in block:
            yield row.reshape(28, 28)


# ----------------------------------------------------------------------------------------- detection

@dataclass(frozen=True)
class FileInfo:
    """What a file holds: ``format`` is one of FORMATS, or None with ``note`` saying why it is unusable."""

    path: Path
    format: Optional[str]
    note: Optional[str] = None
    rows: int = 0  # bitmaps only: number of images


def detect_format(path: Path) -> FileInfo:
    """Recognise a file from its content: .npy header, or the first valid ndjson line."""
    path = Path(path)
    try:
        with open_regular(path, SPECIAL_FIX) as fh:
            head = fh.read(len(NPY_MAGIC))
        if head == NPY_MAGIC:
            return _detect_npy(path)
        probed = 0
        for probed, (_, line) in zip(range(1, DETECT_MAX_LINES + 1), iter_lines(path)):
            try:
                fmt = None if line is None else _stroke_format(_loads(line))
            except _JSON_ERRORS:
                fmt = None
            if fmt is not None:
                return FileInfo(path, fmt)
        # A file of nothing but blank lines counts as empty.
        return FileInfo(path, None, NOTE_NOT_QUICKDRAW if probed else NOTE_EMPTY)
    except (OSError, UserError):
        return FileInfo(path, None, NOTE_UNREADABLE)


def _detect_npy(path: Path) -> FileInfo:
    try:
        data = open_bitmaps(path)
    except (OSError, ValueError):
        return FileInfo(path, None, NOTE_BAD_NPY)
    if data.shape[0] == 0:
        return FileInfo(path, None, NOTE_EMPTY)
    return FileInfo(path, BITMAP, rows=int(data.shape[0]))


# ----------------------------------------------------------------------------------------- finding files

_WORD_SPLIT = re.compile(r"[^a-z]+")


def fruit_from_name(name: str, fruits: Sequence[str] = FRUITS) -> Optional[str]:
    """The fruit named as a whole word in a file name ('full_raw_apple.ndjson' -> apple, 'pineapple' -> None)."""
    words = set(_WORD_SPLIT.split(name.lower().rsplit(".", 1)[0]))
    found = [f for f in fruits if f in words]
    return found[0] if len(found) == 1 else None


@dataclass
class RawDataScan:
    """The data files found under rawData/ and what was set aside."""

    raw_dir: Path
    user: Dict[str, List[FileInfo]] = field(default_factory=dict)  # fruit -> user downloads
    sample: Dict[str, List[FileInfo]] = field(default_factory=dict)  # fruit -> bundled sample files
    notes: List[Tuple[str, str]] = field(default_factory=list)  # (path relative to rawData/, note)

    def files_for(self, fruit: str) -> List[FileInfo]:
        """User files replace the sample for a fruit that has any."""
        return list(self.user.get(fruit) or self.sample.get(fruit) or [])

    def fruits_with_data(self, formats: Union[str, Sequence[str]] = AUTO) -> List[str]:
        return [f for f in FRUITS if select_files(self.files_for(f), formats)]

    def note_counts(self) -> Dict[str, int]:
        return dict(Counter(note for _, note in self.notes))

    def relative(self, path: Path) -> str:
        return Path(path).relative_to(self.raw_dir).as_posix()


_FORMAT_ORDER = {SIMPLIFIED: 0, RAW: 1, BITMAP: 2}  # simplified first: it wins key_id duplicates


def select_files(files: Sequence[FileInfo], formats: Union[str, Sequence[str]] = AUTO) -> List[FileInfo]:
    """The files to read for one fruit, in reading order (simplified, raw, bitmap; then by name)."""
    if formats == AUTO:
        strokes = [f for f in files if f.format in STROKE_FORMATS]
        chosen = strokes or [f for f in files if f.format == BITMAP]
    else:
        chosen = [f for f in files if f.format in formats]
    return sorted(chosen, key=lambda f: (_FORMAT_ORDER[f.format], f.path.name))


def _is_data_candidate(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.name.lower() not in IGNORED_NAMES


def _refuse_special(path: Path, fruits: Sequence[str]) -> None:
    """Refuse a fruit's file in rawData/ that is a FIFO, folder, device or broken link: skipped, the sample
    would quietly stand in for it; opened, a FIFO would wait forever."""
    if path.name.startswith(".") or path.name == SAMPLE_DIR or fruit_from_name(path.name, fruits) is None:
        return
    kind = not_regular(path)
    if kind is not None:
        raise UserError(f"rawData/{path.name} is {kind}, not a regular file; {SPECIAL_FIX}")


def scan_raw_data(raw_dir: Path, fruits: Sequence[str] = FRUITS) -> RawDataScan:
    """Find the user's files (directly in rawData/) and the bundled sample (rawData/sample/<format>/)."""
    raw_dir = Path(raw_dir)
    scan = RawDataScan(raw_dir)
    entries = [Path(e.path) for e in list_folder(raw_dir, "fix its permissions")]
    for path in entries:
        _refuse_special(path, fruits)
    for path in (p for p in entries if _is_data_candidate(p)):
        info = detect_format(path)
        if info.format is None:
            scan.notes.append((path.name, info.note or NOTE_NOT_QUICKDRAW))
            continue
        fruit = fruit_from_name(path.name, fruits)
        if fruit is None:
            scan.notes.append((path.name, NOTE_NO_FRUIT))
            continue
        scan.user.setdefault(fruit, []).append(info)
    sample_dir = raw_dir / SAMPLE_DIR
    if sample_dir.is_dir():
        for path in sorted(p for p in sample_dir.rglob("*") if _is_data_candidate(p)):
            fruit = fruit_from_name(path.name, fruits)
            if fruit is None:  # the sample also holds fruits the project does not train (blueberry...)
                continue
            info = detect_format(path)
            if info.format is None:
                scan.notes.append((scan.relative(path), info.note or NOTE_NOT_QUICKDRAW))
                continue
            scan.sample.setdefault(fruit, []).append(info)
    return scan


def is_blank_bitmap(row: np.ndarray) -> bool:
    return not np.any(row)
