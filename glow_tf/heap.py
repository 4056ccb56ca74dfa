"""HeapTrimmer: gives the C heap's free pages back to the system once a second while training.

XLA compiles a training step on its own threads, and glibc serves each thread from its own
arena; what the compiler frees stays in those arenas, counted in the process's resident
memory, and the Python-side work that follows (the step's first run, the test pass, the
export's tracing) allocates from the main arena beside it. At the CelebA-HQ size about
0.24 GiB stays free but resident after the first step compiles (64-pixel proxy of
``benchmarks/bench_celeba.py``: ``malloc_trim(0)`` after the step 5.85 -> 5.62 GiB), so the
peak is that much higher than what is in use. ``malloc_trim(0)`` releases the free pages of
every arena; calling it from a thread once a second for the whole run (``train_and_evaluate``)
keeps them out of the peak (proxy: 5.85 -> 5.65 GiB). Each call takes milliseconds.

Only with glibc: elsewhere (musl, macOS) there is no ``malloc_trim`` and the trimmer does nothing.
"""
import ctypes
import ctypes.util
import threading


def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


class HeapTrimmer:
    """A context manager: a daemon thread calls ``malloc_trim(0)`` every ``period`` seconds.

    Args:
      period: seconds between two trims (> 0).
    """

    def __init__(self, period=1.0):
        if not period > 0:
            raise ValueError(f"HeapTrimmer.period: expected seconds > 0, got {period!r}")
        self.period = float(period)
        self.trim = _malloc_trim()
        self._stop = threading.Event()
        self._thread = None

    @property
    def active(self) -> bool:
        """Whether a trimming thread runs (False without glibc)."""
        return self._thread is not None

    def _loop(self):
        while not self._stop.wait(self.period):
            self.trim(0)

    def __enter__(self):
        if self.trim is not None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="glow_tf-heap-trimmer", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        return False
