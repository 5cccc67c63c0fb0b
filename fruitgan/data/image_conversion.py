"""Rendering rawData/ into an image version: the work behind rawDataToImage.py, callable from code.

    summary = convert(ConvertOptions(workdir=..., fruits=["apple"], resolution=28, count=1000, version="1"))

Reads through quickdraw_formats.py, renders with stroke_render.py, holds drawings out with heldout_split.py
and writes imageData/<fruit>/version<NAME>/ through image_version.py (the folder's owner).

Speed: a multiprocessing Pool (``workers``) parses, validates, renders and PNG-encodes chunks of lines;
the main process only de-duplicates and writes bytes. A few chunks at most are in flight, so memory stays
flat whatever the file size, and reading stops as soon as ``count`` images are kept."""
from __future__ import annotations

import dataclasses
import multiprocessing
import signal
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from fruitgan.data import quickdraw_formats as qf
from fruitgan.data import stroke_render as sr
from fruitgan.data.image_version import (IMAGE_DIR, FruitWriter, existing_version_fruits, heldout_record,
                                         next_free_version, recover_fruit_folder, version_lock, version_metadata)
from fruitgan.data.heldout_split import choose_heldout, split_note, split_seed_key
from fruitgan.util import settings as st
from fruitgan.util.run_lock import unfinished_until_done
from fruitgan.util.safe_files import FRUITS, check_name, clean_stale_temp, default_workdir, write_error
from fruitgan.util.user_io import UserError

IN_FLIGHT_PER_WORKER = 2  # chunks queued per worker: keeps them busy while bounding memory
AUGMENT_CHUNK = 64  # augmented images per worker task
SOURCE_STREAM, IMAGE_STREAM = 1, 2  # separate seeded random streams: which source, how it is changed
NEWLINE_BLOCK = 1 << 20  # bytes read at a time when counting a stroke file's drawings


@dataclass
class ConvertOptions:
    """Everything convert() needs; the CLI fills it from flags and prompts."""

    workdir: Path = field(default_factory=default_workdir)  # holds rawData/ imageData/ npzData/ models/
    fruits: Optional[List[str]] = None  # None: every fruit that has data
    resolution: int = st.RESOLUTION.default  # output images are resolution x resolution (settings' rule)
    quality: str = st.QUALITY.default  # a key of quickdraw_formats.QUALITY_PRESETS
    count: int = st.COUNT.default  # images per fruit: reading stops once this many are kept
    version: Optional[str] = st.IMAGE_VERSION.default  # dataset version name; None: the next free number
    augment: bool = st.AUGMENT.default  # fill up to `count` with augmented copies of the real drawings
    seed: int = st.SEED.default  # seeds the augmentation (results do not depend on the number of workers)
    formats: Union[str, Sequence[str]] = st.FORMATS.default  # "auto" or a subset of simplified/raw/bitmap
    workers: int = st.WORKERS.default  # worker processes (1: everything in this process)
    overwrite: bool = False  # replace an existing version (only once the new one is complete)
    progress: bool = True  # tqdm bars on stderr
    augment_settings: sr.AugmentSettings = field(default_factory=sr.AugmentSettings)

    def __post_init__(self) -> None:
        """Each option within the bounds settings.py declares (a one-line UserError naming its flag)."""
        checked = (st.RESOLUTION, st.QUALITY, st.COUNT, st.SEED, st.WORKERS, st.AUGMENT)
        st.check_values(dataclasses.asdict(self), checked, "conversion options",
                        "choose a value within its bounds (see rawDataToImage.py --help)", by_flag=True)
        if self.formats != qf.AUTO:
            bad = [f for f in self.formats if f not in qf.FORMATS]
            if bad or not self.formats or isinstance(self.formats, str):
                raise UserError(f"conversion options: --formats {self.formats!r} is not valid; "
                                f"use auto or some of {', '.join(qf.FORMATS)}")


# ----------------------------------------------------------------------------------------- worker side

@dataclass(frozen=True)
class RenderJob:
    """What a worker needs to turn one fruit's records into PNGs (small and picklable)."""

    fruit: str
    fruit_index: int  # position in FRUITS: seeds stay the same whichever fruits are chosen
    resolution: int
    quality: str
    keep_sources: bool  # send back strokes/bitmaps too (needed for augmentation)
    seed: int = 0
    augment_settings: sr.AugmentSettings = sr.AugmentSettings()


@dataclass
class ChunkResult:
    """kept: (key_id or None, PNG bytes, source for augmentation or None); skipped: reason -> count."""

    kept: List[Tuple[Optional[str], bytes, object]]
    skipped: Dict[str, int]
    lines: int


@lru_cache(maxsize=8)
def _renderer(resolution: int) -> sr.StrokeRenderer:
    """One renderer per resolution per process: the supersampled canvas is reused across images."""
    return sr.StrokeRenderer(resolution)


def render_stroke_chunk(job: RenderJob, fmt: str, chunk: qf.LineChunk) -> ChunkResult:
    """Parse, validate, filter by quality and render a chunk of ndjson lines."""
    preset = qf.QUALITY_PRESETS[job.quality]
    renderer = _renderer(job.resolution)
    kept, skipped = [], Counter()
    for line_no, line in chunk.lines:
        drawing = qf.parse_line(line, fmt, job.fruit, line_no)
        if isinstance(drawing, qf.Skip):
            skipped[drawing.reason] += 1
            continue
        reason = preset.reject_reason(drawing)
        if reason:
            skipped[reason] += 1
            continue
        png = sr.encode_png(renderer.render(drawing.strokes))
        source = [s.astype(np.float32) for s in drawing.strokes] if job.keep_sources else None
        kept.append((drawing.key_id, png, source))
    return ChunkResult(kept, dict(skipped), len(chunk.lines))


def render_bitmap_chunk(job: RenderJob, path: str, start: int, stop: int) -> ChunkResult:
    """Resize rows [start, stop) of a memory-mapped numpy-bitmap file."""
    rows = np.array(qf.open_bitmaps(path)[start:stop])  # (k, 784) uint8
    kept, skipped = [], Counter()
    for row in rows:
        if qf.is_blank_bitmap(row):
            skipped[qf.SKIP_BLANK_BITMAP] += 1
            continue
        png = sr.encode_png(sr.render_bitmap(row, job.resolution))
        kept.append((None, png, row if job.keep_sources else None))
    return ChunkResult(kept, dict(skipped), len(rows))


def render_augment_chunk(job: RenderJob, items: List[Tuple[int, int, object]]) -> List[Tuple[int, int, bytes]]:
    """items: (image index, source index, source strokes or bitmap row) -> (index, source index, PNG)."""
    out = []
    for index, source_index, source in items:
        # One generator per image: the result depends on (seed, fruit, index), never on scheduling.
        rng = np.random.default_rng([job.seed, job.fruit_index, IMAGE_STREAM, index])
        if isinstance(source, np.ndarray) and source.dtype == np.uint8:
            image = sr.render_augmented_bitmap(source, job.resolution, rng, job.augment_settings)
        else:
            image = sr.render_augmented_strokes(_renderer(job.resolution), source, rng, job.augment_settings)
        out.append((index, source_index, sr.encode_png(image)))
    return out


def run_task(task: tuple):
    """Entry point of a pool task: (function name, args...). Module-level so it pickles by name."""
    kind, *args = task
    return _TASKS[kind](*args)


_TASKS = {"strokes": render_stroke_chunk, "bitmap": render_bitmap_chunk, "augment": render_augment_chunk}


def _worker_init() -> None:
    # Ctrl+C is handled once, by the main process, which then stops the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class TaskRunner:
    """Runs tasks in order, in a Pool (or inline with one worker), never with more than a few in flight
    (Pool.imap would read the whole input ahead of the workers: for a 100+ MB file, all of it)."""

    def __init__(self, workers: int):
        self.workers = workers
        self.pool = None

    def __enter__(self) -> "TaskRunner":
        if self.workers > 1:
            self.pool = multiprocessing.get_context().Pool(self.workers, initializer=_worker_init)
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.terminate()  # stale tasks after an early stop are not worth waiting for
            self.pool.join()

    def ordered(self, tasks: Iterable[tuple]) -> Iterator:
        if self.pool is None:
            yield from map(run_task, tasks)
            return
        pending: deque = deque()
        limit = self.workers * IN_FLIGHT_PER_WORKER
        for task in tasks:
            pending.append(self.pool.apply_async(run_task, (task,)))
            if len(pending) >= limit:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


# ----------------------------------------------------------------------------------------- main side

def scan_workdir(workdir: Path) -> qf.RawDataScan:
    raw_dir = Path(workdir) / "rawData"
    if not raw_dir.is_dir():
        raise UserError(f"no rawData/ folder in {workdir}; put the Quick, Draw! files there or pass --workdir")
    return qf.scan_raw_data(raw_dir)


def _resolve_fruits(opts: ConvertOptions, scan: qf.RawDataScan) -> List[str]:
    found = scan.fruits_with_data(opts.formats)
    if not found:
        raise UserError(f"no usable Quick, Draw! data for any fruit in {scan.raw_dir} "
                        f"(formats: {opts.formats}); see rawData/README.md")
    if opts.fruits is None:
        return found
    missing = [f for f in opts.fruits if f not in found]
    if missing:
        raise UserError(f"no data for {', '.join(missing)} (formats: {opts.formats}); "
                        f"fruits with data: {', '.join(found)}")
    return list(dict.fromkeys(opts.fruits))


@dataclass
class FruitProgress:
    """Running totals for one fruit."""

    real: int = 0
    augmented: int = 0
    lines: int = 0
    skipped: Counter = field(default_factory=Counter)
    seen_keys: set = field(default_factory=set)
    sources: list = field(default_factory=list)  # strokes/bitmaps of kept reals (augmentation only)
    files_read: List[str] = field(default_factory=list)
    formats_used: List[str] = field(default_factory=list)
    heldout: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # held-out real indices


# ---------------------------------------------------------------- which drawings: the most a fruit has

def _line_count(path: Path) -> int:
    """Lines of an ndjson file (one drawing each), counted without parsing."""
    with open(path, "rb") as fh:
        return sum(block.count(b"\n") for block in iter(lambda: fh.read(NEWLINE_BLOCK), b""))


def stroke_drawing_estimate(files: Sequence[qf.FileInfo]) -> int:
    """About how many distinct stroke drawings the files hold: the largest per-format total of lines
    (raw files repeat the simplified drawings, so the formats' totals are not added)."""
    per_format = Counter()
    for info in (f for f in files if f.format in qf.STROKE_FORMATS):
        per_format[info.format] += _line_count(info.path)
    return max(per_format.values(), default=0)


def choose_files(files: Sequence[qf.FileInfo], formats, resolution: int) -> Tuple[List[qf.FileInfo], str]:
    """The files to read for one fruit and why. At the bitmaps' own size (28 px) with formats "auto", the source
    with the most drawings wins, never both (the first bitmap rows ARE the simplified drawings); else select_files."""
    chosen = qf.select_files(files, formats)
    if formats != qf.AUTO or int(resolution) != sr.BITMAP_SIDE:
        return chosen, f"formats {formats if formats == qf.AUTO else ','.join(formats)}"
    bitmaps = qf.select_files(files, [qf.BITMAP])
    rows = sum(f.rows for f in bitmaps)
    strokes = stroke_drawing_estimate(files)
    if not bitmaps:
        return chosen, "strokes: no bitmaps"
    if rows > strokes:
        return bitmaps, f"bitmaps: {rows} drawings at {sr.BITMAP_SIDE} px, more than the strokes' {strokes}"
    return chosen, f"strokes: {strokes} drawings, not fewer than the bitmaps' {rows}"


def _file_tasks(job: RenderJob, info: qf.FileInfo) -> Iterator[tuple]:
    if info.format == qf.BITMAP:
        for start in range(0, info.rows, qf.BITMAP_CHUNK_ROWS):
            yield ("bitmap", job, str(info.path), start, min(start + qf.BITMAP_CHUNK_ROWS, info.rows))
    else:
        for chunk in qf.iter_line_chunks(info.path):
            yield ("strokes", job, info.format, chunk)


def _collect_reals(runner: TaskRunner, job: RenderJob, files: List[qf.FileInfo], scan: qf.RawDataScan,
                   count: int, writer: FruitWriter, state: FruitProgress, bar) -> None:
    """Render real drawings file after file until ``count`` are kept."""
    for info in files:
        if state.real >= count:
            return
        state.files_read.append(scan.relative(info.path))
        if info.format not in state.formats_used:
            state.formats_used.append(info.format)
        for result in runner.ordered(_file_tasks(job, info)):
            state.lines += result.lines
            state.skipped.update(result.skipped)
            for key_id, png, source in result.kept:
                if key_id is not None:
                    if key_id in state.seen_keys:  # raw files repeat the simplified drawings
                        state.skipped[qf.SKIP_DUPLICATE] += 1
                        continue
                    state.seen_keys.add(key_id)
                writer.write_real(state.real, png)
                if job.keep_sources:
                    state.sources.append(source)
                state.real += 1
                bar.update(1)
                if state.real >= count:
                    return


def _augment_tasks(job: RenderJob, state: FruitProgress, needed: int) -> Iterator[tuple]:
    """Tasks of AUGMENT_CHUNK images; sources cycle through the shuffled TRAINING reals so each is used evenly
    (a held-out drawing is never a source: its copies would leak it into training)."""
    rng = np.random.default_rng([job.seed, job.fruit_index, SOURCE_STREAM])
    training = np.setdiff1d(np.arange(state.real, dtype=np.int64), state.heldout)
    order: List[int] = []
    items = []
    for k in range(needed):
        if not order:
            order = list(training[rng.permutation(len(training))])
        source_index = int(order.pop())
        items.append((state.real + k, source_index, state.sources[source_index]))
    for start in range(0, needed, AUGMENT_CHUNK):
        yield ("augment", job, items[start:start + AUGMENT_CHUNK])


def _make_augmented(runner: TaskRunner, job: RenderJob, count: int, writer: FruitWriter,
                    state: FruitProgress, bar) -> None:
    for result in runner.ordered(_augment_tasks(job, state, count - state.real)):
        for index, source_index, png in result:
            writer.write_augmented(index, source_index, png)
            state.augmented += 1
            bar.update(1)


def convert_fruit(runner: TaskRunner, opts: ConvertOptions, scan: qf.RawDataScan, fruit: str, version: str) -> dict:
    """Build imageData/<fruit>/version<NAME>/ and return this fruit's summary."""
    from tqdm import tqdm
    started = time.perf_counter()
    files, source_choice = choose_files(scan.files_for(fruit), opts.formats, opts.resolution)
    job = RenderJob(fruit, FRUITS.index(fruit), int(opts.resolution), opts.quality, bool(opts.augment),
                    int(opts.seed), opts.augment_settings)
    state = FruitProgress()
    writer = FruitWriter(opts.workdir, fruit, version)
    try:
        with tqdm(total=opts.count, desc=f"{fruit:<10}", unit="img", disable=not opts.progress, leave=True) as bar:
            _collect_reals(runner, job, files, scan, opts.count, writer, state, bar)
            state.heldout = choose_heldout(state.real, fruit)
            split = heldout_record(state.heldout, state.real, st.HELDOUT_SHARE, st.HELDOUT_MIN,
                                   split_seed_key(fruit), None if len(state.heldout) else split_note(state.real))
            if opts.augment and len(state.heldout) < state.real < opts.count:
                _make_augmented(runner, job, opts.count, writer, state, bar)
        rule = qf.QUALITY_PRESETS[opts.quality].rule()
        if qf.BITMAP in state.formats_used:
            rule += " (bitmaps carry no strokes: kept whatever the preset)"
        metadata = version_metadata(
            fruit, version, opts.resolution, state.real, state.augmented, requested_count=int(opts.count),
            quality=opts.quality, quality_rule=rule, formats=state.formats_used, source_files=state.files_read,
            source_choice=source_choice, heldout=split,
            augmentation={"enabled": bool(opts.augment),
                          "settings": {**opts.augment_settings.to_dict(), "seed": int(opts.seed)}},
            skipped=dict(sorted(state.skipped.items())))
        folder = writer.publish(metadata) if state.real else None
        if folder is None:
            writer.discard()
    except BaseException:
        writer.discard()  # nothing half-written stays; an old version is untouched
        raise
    return {"folder": str(folder) if folder else None, "real_count": state.real, "augmented_count": state.augmented,
            "count": state.real + state.augmented, "short": state.real + state.augmented < opts.count,
            "skipped": dict(sorted(state.skipped.items())), "source_files": state.files_read,
            "formats": state.formats_used, "lines_read": state.lines, "source_choice": source_choice,
            "heldout_count": len(state.heldout), "heldout_note": split["note"],
            "seconds": round(time.perf_counter() - started, 3)}


def convert(options: Union[ConvertOptions, dict]) -> dict:
    """Convert rawData/ into imageData/<fruit>/version<NAME>/ for the chosen fruits; return a summary (the
    options, fruits {fruit: convert_fruit's summary}, file_notes [{file, note}], images, seconds).
    UserError for bad options, missing data, an existing version without ``overwrite``, an unwritable folder."""
    opts = options if isinstance(options, ConvertOptions) else ConvertOptions(**options)
    opts = dataclasses.replace(opts, workdir=Path(opts.workdir))  # the caller's object stays as it was
    scan = scan_workdir(opts.workdir)
    fruits = _resolve_fruits(opts, scan)
    version = check_name(opts.version or next_free_version(opts.workdir), "version")
    root = opts.workdir / IMAGE_DIR
    try:   # the lock lives in imageData/: an unwritable one is said as a failed write of it
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(root, exc) from None
    with version_lock(opts.workdir, version) as lock:   # one writer per version; a second one is refused here
        clean_stale_temp(root, recursive=False)   # temp files of dead writers (e.g. of the record below)
        for fruit in fruits:   # what a killed writer of this version left: old version back, partials gone
            recover_fruit_folder(opts.workdir, fruit, version)
        existing = existing_version_fruits(opts.workdir, version, fruits)
        if existing and not opts.overwrite:
            raise UserError(f"version {version} already exists for {', '.join(existing)}; "
                            "choose another --version or add --overwrite to replace it")
        redo = existing_version_fruits(opts.workdir, version, fruits, unfinished=True)
        if redo:
            print(f"version {version} of {', '.join(redo)} was left unfinished by a run that stopped early; "
                  "replacing it", flush=True)
        started = time.perf_counter()
        per_fruit = {}
        with unfinished_until_done(lock.folder, [f for f in fruits if f not in existing], fruits) as done, \
                TaskRunner(int(opts.workers)) as runner:
            for fruit in fruits:
                per_fruit[fruit] = convert_fruit(runner, opts, scan, fruit, version)
                done.append(fruit)
    return {"workdir": str(opts.workdir), "version": version, "resolution": int(opts.resolution),
            "quality": opts.quality, "quality_rule": qf.QUALITY_PRESETS[opts.quality].rule(),
            "formats": opts.formats if opts.formats == qf.AUTO else list(opts.formats),
            "augment": bool(opts.augment), "seed": int(opts.seed), "workers": int(opts.workers),
            "requested_count": int(opts.count), "fruits": per_fruit,
            "file_notes": [{"file": f, "note": n} for f, n in scan.notes],
            "images": sum(f["count"] for f in per_fruit.values()), "seconds": round(time.perf_counter() - started, 3)}


def format_summary(summary: dict) -> str:
    """The end-of-run table: kept, augmented, skipped and why, per fruit."""
    lines = [f"version {summary['version']}: {summary['resolution']}x{summary['resolution']} px, "
             f"quality {summary['quality']} ({summary['quality_rule']}), {summary['seconds']:.1f} s"]
    header = f"{'fruit':<11}{'real':>7}{'augmented':>11}{'total':>7}{'skipped':>9}  skipped because"
    lines += [header, "-" * len(header)]
    for fruit, info in summary["fruits"].items():
        reasons = ", ".join(f"{reason}: {n}" for reason, n in info["skipped"].items()) or "-"
        lines.append(f"{fruit:<11}{info['real_count']:>7}{info['augmented_count']:>11}{info['count']:>7}"
                     f"{sum(info['skipped'].values()):>9}  {reasons}")
    for fruit, info in summary["fruits"].items():
        split = (f"{info['heldout_count']} real drawings held out of training" if info["heldout_count"]
                 else info["heldout_note"])
        lines.append(f"{fruit}: {info['source_choice']}; {split}")
    for fruit, info in summary["fruits"].items():
        if info["folder"] is None:
            lines.append(f"{fruit}: no drawing kept, no folder written")
        elif info["short"]:
            hint = "" if summary["augment"] else " (--augment fills up to the count)"
            lines.append(f"{fruit}: only {info['count']} images, fewer than the {summary['requested_count']} "
                         f"asked for: the data has no more{hint}")
    if summary["file_notes"]:
        counts = Counter(n["note"] for n in summary["file_notes"])
        lines.append(f"rawData: {len(summary['file_notes'])} file(s) set aside: "
                     + "; ".join(f"{note}: {n}" for note, n in counts.items()))
        lines += [f"  note: rawData/{n['file']}: {n['note']}" for n in summary["file_notes"]]
    folders = [info["folder"] for info in summary["fruits"].values() if info["folder"]]
    if folders:
        lines.append(f"written: {len(folders)} folder(s) under {Path(summary['workdir']) / IMAGE_DIR}")
    return "\n".join(lines)
