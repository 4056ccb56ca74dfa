"""glow_tf.heap.HeapTrimmer: free heap pages leave the resident set while it runs, and not without it."""
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from glow_tf import heap

# In a fresh interpreter: 300 MB of 2 KB blocks (malloc'd by the C heap, not Python's small-object
# allocator), one block kept after them so that the heap's top cannot shrink, then all but that one
# freed: the pages stay resident until something trims the heap. Prints the RSS drop in MiB, after
# the trimmer has trimmed twice ("trim"; counted, so that a loaded machine only makes it later), or
# after as long a wait without it ("wait").
_PROGRAM = """
import re, sys, time
from glow_tf import heap
def rss_mib():
    return int(re.search(r"VmRSS:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) / 1024
blocks = [bytearray(2048) for _ in range(150_000)]
pin = bytearray(2048)
del blocks
before = rss_mib()
if sys.argv[1] == "trim":
    trimmer, trims = heap.HeapTrimmer(period=0.05), []
    trim = trimmer.trim
    trimmer.trim = lambda pad: trims.append(trim(pad))
    with trimmer:
        while len(trims) < 2:
            time.sleep(0.01)
else:
    time.sleep(1.0)
print(before - rss_mib())
"""


def _rss_drop_mib(mode):
    result = subprocess.run([sys.executable, "-c", _PROGRAM, mode], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return float(result.stdout.split()[-1])


@pytest.mark.skipif(heap.HeapTrimmer().trim is None, reason="no glibc malloc_trim on this system")
def test_the_trimmer_returns_freed_heap_pages_and_nothing_else_does():
    assert _rss_drop_mib("wait") < 50
    assert _rss_drop_mib("trim") > 200


def test_the_trimmer_stops_with_its_block_and_checks_its_period():
    with heap.HeapTrimmer(period=0.05) as trimmer:
        assert trimmer.active == (trimmer.trim is not None)
    assert not trimmer.active
    with pytest.raises(ValueError, match="period: expected seconds > 0, got 0"):
        heap.HeapTrimmer(period=0)
