"""What the voice engines share: edge trimming, word tokens, and running synthesis in a forked child."""

from __future__ import annotations

import os
import pickle
import re
import warnings

import numpy as np

from talkstudio.voices import Phoneme, Speech, Word

SILENCE_FLOOR = 10 ** (-50 / 20)  # trim threshold, -50 dBFS
EDGE_MARGIN_S = 0.01  # silence kept before and after the voice
TOKEN = re.compile(r"\S+")
OUTER_PUNCTUATION = ".,;:!?\"'()[]{}«»“”‘’—–-…¡¿"


def in_forked_child(engine: str, function, *args):
    """Run `function(*args)` in a forked child and return its result (in-process where fork is missing).

    The child starts from this process's state and throws its own away: engines whose native state
    drifts between calls (espeak's random seed, onnxruntime's noise) give the same output every time.
    """
    if not hasattr(os, "fork"):
        return function(*args)
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the child only synthesises and writes a pipe
        pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            try:
                payload = pickle.dumps(("ok", function(*args)))
            except Exception as error:  # noqa: BLE001 - handed to the parent, which raises it
                payload = pickle.dumps(("error", f"{type(error).__name__}: {error}"))
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(payload)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    os.waitpid(pid, 0)
    if not payload:
        raise RuntimeError(f"{engine} synthesis process died")
    status, result = pickle.loads(payload)
    if status == "error":
        raise RuntimeError(f"{engine}: {result}")
    return result


def trim_edges(speech: Speech) -> Speech:
    """Cut leading and trailing silence (keeping a short margin), shifting the timings."""
    voiced = np.flatnonzero(np.abs(speech.samples) > SILENCE_FLOOR)
    if not len(voiced):
        return speech
    margin = int(EDGE_MARGIN_S * speech.rate)
    first = max(int(voiced[0]) - margin, 0)
    last = min(int(voiced[-1]) + 1 + margin, len(speech.samples))
    shift, duration = first / speech.rate, (last - first) / speech.rate

    def clamp(t: float) -> float:
        return min(max(t - shift, 0.0), duration)

    return Speech(
        speech.samples[first:last].copy(),
        speech.rate,
        [Word(w.text, clamp(w.start), clamp(w.end)) for w in speech.words],
        [Phoneme(p.symbol, clamp(p.start), clamp(p.end)) for p in speech.phonemes],
    )
