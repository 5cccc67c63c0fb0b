"""What a training uses of the machine: this process's resident memory (RSS), its peak sampled by a background
thread, the peak CUDA memory, and the CPUs it may run on (what cost_analysis_training.py charges for)."""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Any, Callable, Optional

BYTES_PER_GB = 1024 ** 3  # binary gigabyte (GiB), as RAM and disk plans are sized
DEFAULT_SAMPLE_INTERVAL_S = 0.5  # RSS sampling period: often enough to catch peaks, cheap on 2 cores


def process_rss_bytes() -> int:
    import psutil

    return int(psutil.Process(os.getpid()).memory_info().rss)


def cuda_peak_bytes() -> int:
    """Peak CUDA memory of this process (all devices), 0 when CUDA is not in use; never imports torch or CUDA."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return 0
    return int(sum(torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count())))


def reset_cuda_peak() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        for i in range(torch.cuda.device_count()):
            torch.cuda.reset_peak_memory_stats(i)


def available_cpus() -> int:
    """CPUs this process may run on (container/affinity aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def measured_cpus() -> int:
    """CPUs the training uses: torch's thread count, never more than the CPUs available."""
    import torch

    return max(1, min(int(torch.get_num_threads()), available_cpus()))


class MemorySampler:
    """Keeps the peak of a memory reading (process RSS by default), read by ``sample()`` and, to catch peaks
    inside a long epoch, every ``interval_s`` by a thread. ``reader``/``gpu_reader`` return bytes (replaceable in
    tests); CUDA keeps its own running maximum, so the GPU is read in the caller's thread only."""

    def __init__(self, interval_s: float = DEFAULT_SAMPLE_INTERVAL_S, reader: Optional[Callable[[], int]] = None,
                 gpu_reader: Optional[Callable[[], int]] = None, background: bool = True):
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.interval_s, self.background = float(interval_s), background
        self.reader = reader if reader is not None else process_rss_bytes
        self.gpu_reader = gpu_reader if gpu_reader is not None else cuda_peak_bytes
        self.peak_bytes = self.peak_gpu_bytes = 0
        self.samples = 0  # how many RSS readings were taken
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _read_rss(self) -> None:
        value = int(self.reader())
        with self._lock:
            self.samples += 1
            self.peak_bytes = max(self.peak_bytes, value)

    def sample(self) -> int:
        """Take a reading now (RSS and GPU); returns the peak RSS so far."""
        self._read_rss()
        gpu = int(self.gpu_reader())
        with self._lock:
            self.peak_gpu_bytes = max(self.peak_gpu_bytes, gpu)
            return self.peak_bytes

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            with contextlib.suppress(Exception):  # a failed reading must not kill training; the next one may work
                self._read_rss()

    def start(self) -> "MemorySampler":
        self.sample()
        if self.background and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> int:
        """Stop the thread (if any), take a last reading and return the peak RSS in bytes."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        return self.sample()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def __enter__(self) -> "MemorySampler":
        return self.start()

    def __exit__(self, *_exc_info: Any) -> None:
        self.stop()
