"""Conversion speed: the project's image_conversion.convert (what rawDataToImage.py runs) versus a naive loop.

    python benchmarks/bench_convert.py                  # 100k lines, 64 px, 2 workers
    python benchmarks/bench_convert.py --lines 20000

The input is SYNTHETIC-FROM-REAL: a simplified ndjson file of ``--lines`` drawings, each a randomly
rotated / stretched copy of one of the 25 real simplified apple drawings bundled in rawData/sample,
re-normalised to 0-255 integers like Google's simplified files (so the point counts stay realistic). Both methods
convert the same file to PNGs of the same size in the same run; the table gives drawings/s and the
ratio. The naive loop draws the same recipe (supersampled PIL lines with round ends, fitted with
the aspect kept) the straightforward way: json.loads, Python lists, LANCZOS resize, img.save(path)
line by line. Peak RSS is sampled (main process + workers) while the project converts.

Where the files go matters: on a slow virtual disk creating a file can cost ~1 ms, more than
rendering it, and then both methods just wait for the disk. By default the work folder is made in
/dev/shm (RAM, when there is one) so the table measures the conversion; ``--tmp-dir DIR`` measures
on another file system (e.g. ``--tmp-dir .`` for the project's disk).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fruitgan.data import quickdraw_formats as qf  # noqa: E402
from bench_header import header  # noqa: E402
from fruitgan.data import stroke_render as sr  # noqa: E402
from fruitgan.data.image_conversion import ConvertOptions, convert  # noqa: E402

SAMPLE = ROOT / "rawData" / "sample"
FRUIT = "apple"
ROTATION_DEG = 15.0  # transformations that make each synthetic line a new drawing
STRETCH = 0.15
RSS_POLL_SECONDS = 0.05
RAM_DIR = Path("/dev/shm")


@dataclass
class BenchConfig:
    """What to measure."""

    lines: int = 100_000  # drawings in the synthetic file
    resolution: int = 64  # output image side
    workers: int = 2  # project's worker processes
    seed: int = 0  # synthetic data generator seed
    keep: bool = False  # keep the temporary work folder
    tmp_dir: Optional[Path] = None  # where the work folder goes (None: /dev/shm if present, else the default)


def real_drawings() -> list:
    """The bundled real simplified apple drawings, each a list of (n, 2) arrays."""
    items = qf.iter_drawings(SAMPLE / qf.SIMPLIFIED / f"{FRUIT}.ndjson", FRUIT)
    return [item.strokes for item in items if isinstance(item, qf.Drawing)]


def synthetic_line(strokes: list, rng: np.random.Generator, key: int) -> str:
    """One simplified ndjson line: a transformed real drawing, written as Google's (quickdraw_formats)."""
    angle = math.radians(rng.uniform(-ROTATION_DEG, ROTATION_DEG))
    stretch = 1.0 + rng.uniform(-STRETCH, STRETCH)
    matrix = np.array([[math.cos(angle) * stretch, math.sin(angle) * stretch], [-math.sin(angle), math.cos(angle)]])
    return qf.simplified_line([s @ matrix for s in strokes], FRUIT, f"synthetic{key:09d}")


def build_file(path: Path, lines: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    sources = real_drawings()
    with open(path, "w", encoding="utf-8") as fh:
        for key in range(lines):
            fh.write(synthetic_line(sources[key % len(sources)], rng, key) + "\n")
    return path.stat().st_size


def naive_convert(path: Path, out_dir: Path, resolution: int) -> int:
    """The straightforward loop: json.loads, PIL draw at 4x, LANCZOS resize, save, one line at a time."""
    from PIL import Image, ImageDraw

    out_dir.mkdir(parents=True, exist_ok=True)
    supersample = sr.supersample_for(resolution)
    side = resolution * supersample
    width = max(supersample, int(round(sr.STROKE_WIDTH_FRACTION * side)))
    margin = sr.MARGIN_FRACTION * side
    done = 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            strokes = record["drawing"]
            xs = [x for s in strokes for x in s[0]]
            ys = [y for s in strokes for y in s[1]]
            span = max(max(xs) - min(xs), max(ys) - min(ys)) or 1
            scale = (side - 2 * margin - width) / span
            cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
            image = Image.new("L", (side, side), 0)
            draw = ImageDraw.Draw(image)
            r = width / 2
            for s in strokes:
                points = [((x - cx) * scale + side / 2, (y - cy) * scale + side / 2) for x, y in zip(s[0], s[1])]
                if len(points) > 1:
                    draw.line(points, fill=255, width=width)
                for x, y in (points[0], points[-1]):
                    draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
            image.resize((resolution, resolution), Image.LANCZOS).save(out_dir / f"real_{done:06d}.png")
            done += 1
    return done


class PeakRss:
    """Samples the RSS of this process plus its children in a thread (psutil)."""

    def __init__(self):
        import psutil

        self.process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        while not self._stop.is_set():
            total = 0
            try:
                total = self.process.memory_info().rss
                for child in self.process.children(recursive=True):
                    try:
                        total += child.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            self.peak = max(self.peak, total)
            self._stop.wait(RSS_POLL_SECONDS)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_benchmark(cfg: BenchConfig) -> dict:
    parent = cfg.tmp_dir if cfg.tmp_dir is not None else (RAM_DIR if RAM_DIR.is_dir() else None)
    tmp = Path(tempfile.mkdtemp(prefix="bench_convert_", dir=parent))
    try:
        raw_dir = tmp / "rawData"
        raw_dir.mkdir()
        data = raw_dir / f"full_simplified_{FRUIT}.ndjson"
        size = build_file(data, cfg.lines, cfg.seed)
        print(f"input: {cfg.lines} synthetic-from-real simplified drawings ({size / 1e6:.1f} MB) -> "
              f"{cfg.resolution}x{cfg.resolution} PNG, files written under {tmp.parent}", flush=True)

        started, cpu_before = time.perf_counter(), os.times()
        with PeakRss() as rss:
            summary = convert(ConvertOptions(workdir=tmp, fruits=[FRUIT], resolution=cfg.resolution, quality="all",
                                             count=cfg.lines, version="bench", formats=[qf.SIMPLIFIED], augment=False,
                                             workers=cfg.workers, progress=False))
        project_s = time.perf_counter() - started
        project_cpu = cpu_seconds(cpu_before, os.times(), children=True)  # the pool is joined: counted
        project_n = summary["fruits"][FRUIT]["real_count"]
        shutil.rmtree(tmp / "imageData")  # RAM folder: free it before the naive run fills another

        started, cpu_before = time.perf_counter(), os.times()
        naive_n = naive_convert(data, tmp / "naive", cfg.resolution)
        naive_s = time.perf_counter() - started
        naive_cpu = cpu_seconds(cpu_before, os.times(), children=False)
    finally:
        if cfg.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return {"load_average": os.getloadavg()[0], "lines": cfg.lines, "project_images": project_n,
            "project_s": project_s, "project_cpu": project_cpu, "naive_images": naive_n, "naive_s": naive_s,
            "naive_cpu": naive_cpu, "peak_rss_mb": rss.peak / 1e6, "workers": cfg.workers}


def cpu_seconds(before: os.times_result, after: os.times_result, children: bool) -> float:
    """CPU time between two os.times() readings (this process, plus reaped children if asked)."""
    spent = (after.user - before.user) + (after.system - before.system)
    if children:
        spent += (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return spent


def format_table(r: dict) -> str:
    project_rate = r["project_images"] / r["project_s"]
    naive_rate = r["naive_images"] / r["naive_s"]
    naive_cpu_ms = 1000 * r["naive_cpu"] / r["naive_images"]
    project_cpu_ms = 1000 * r["project_cpu"] / r["project_images"]
    rows = [
        "| method | drawings | seconds | drawings/s | CPU ms per drawing (all processes) |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| naive loop (1 process) | {r['naive_images']} | {r['naive_s']:.1f} | {naive_rate:.0f} | {naive_cpu_ms:.2f} |",
        f"| image_conversion.convert ({r['workers']} workers) | {r['project_images']} | {r['project_s']:.1f} "
        f"| {project_rate:.0f} | {project_cpu_ms:.2f} |",
        f"| ratio (project / naive) | | | {project_rate / naive_rate:.2f}x | "
        f"{naive_cpu_ms / project_cpu_ms:.2f}x less CPU |",
        f"\npeak RSS during convert (main + workers): {r['peak_rss_mb']:.0f} MB; "
        f"1-min load average at the end: {r['load_average']:.2f} on {os.cpu_count()} cores "
        "(other work on the machine slows both methods, the parallel one most)",
    ]
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=BenchConfig.lines)
    parser.add_argument("--resolution", type=int, default=BenchConfig.resolution)
    parser.add_argument("--workers", type=int, default=BenchConfig.workers)
    parser.add_argument("--seed", type=int, default=BenchConfig.seed)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--tmp-dir", type=Path, default=None,
                        help="file system to write on (default: /dev/shm when present)")
    args = parser.parse_args(argv)
    cfg = BenchConfig(lines=args.lines, resolution=args.resolution, workers=args.workers, seed=args.seed,
                      keep=args.keep, tmp_dir=args.tmp_dir)
    print(header("bench_convert.py", argv))
    print(format_table(run_benchmark(cfg)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
