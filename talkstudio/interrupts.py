"""Ctrl-C that Python would drop.

A KeyboardInterrupt raised while a finaliser runs (a `__del__`, a weakref callback) is printed as
"Exception ignored" and lost, and the work goes on as if no one had pressed Ctrl-C. `catch_dropped`
remembers such an interrupt instead, and long loops call `stop_if_interrupted` at their checkpoints
(every progress step, every poll of a batch) to raise it where it is handled.
"""

from __future__ import annotations

import sys
import threading

_dropped = threading.Event()


def catch_dropped() -> None:
    """From now on, remember interrupts that land in finalisers (instead of printing and losing them)."""
    if sys.unraisablehook is not _remember_interrupts:
        _remember_interrupts.previous = sys.unraisablehook
        sys.unraisablehook = _remember_interrupts


def _remember_interrupts(unraisable) -> None:
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        _dropped.set()
    else:
        _remember_interrupts.previous(unraisable)


_remember_interrupts.previous = sys.__unraisablehook__


def stop_if_interrupted() -> None:
    """Raise KeyboardInterrupt here if one was dropped since the last checkpoint."""
    if _dropped.is_set():
        _dropped.clear()
        raise KeyboardInterrupt
