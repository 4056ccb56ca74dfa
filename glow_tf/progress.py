"""Progress bars: glow_tf's one way to show that long work is going on.

A bar is tqdm's, on stderr, and only where someone watches: on a terminal, in the process that
reports (a multi-worker run's chief; a library call asks for none), for work that has taken
``DELAY`` seconds (quick work stays silent). It is cleared when the work is done.
"""
import sys

from tqdm import tqdm

DELAY = 3.0  # seconds of work before a bar appears


def bar(iterable=None, show=True, delay=None, **kwargs):
    """A tqdm bar over ``iterable`` (or one updated by hand) that shows only as the module docstring
    says; ``delay``: seconds before it appears (None: ``DELAY``)."""
    return tqdm(iterable, disable=not (show and sys.stderr.isatty()), delay=DELAY if delay is None else delay,
                leave=False, **kwargs)
