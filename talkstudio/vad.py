"""Voice activity detection: Silero VAD's ONNX model, run window by window with its state carried.

The `silero-vad` wheel (MIT) ships the model file. Its Python package imports torch on import and
reads files through torchaudio or torchcodec, which do not load next to the CPU torch used here, so
we read only the model and run it with onnxruntime: every 512-sample window at 16 kHz, preceded by
the previous window's last 64 samples, gives the probability that the 32 ms hold speech, and the
model's recurrent state runs on from window to window. Nothing else of the package is used.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

RATE = 16000  # the model's rate
WINDOW = 512  # samples per decision (32 ms)
CONTEXT = 64  # samples of the previous window the model sees before each one
STATE_SHAPE = (2, 1, 128)
MODEL_FILE = "silero_vad/data/silero_vad.onnx"
INSTALL_HINT = "pip install 'talkstudio[podcast]' (Silero VAD's model and onnxruntime)"


class VadUnavailable(ImportError):
    """The model or onnxruntime is not installed."""


@lru_cache(maxsize=1)
def model_path() -> Path:
    """The ONNX model inside the installed silero-vad distribution, found without importing the package
    (which would import torch)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        path = Path(distribution("silero-vad").locate_file(MODEL_FILE))
    except PackageNotFoundError:
        raise VadUnavailable(f"silero-vad is not installed; {INSTALL_HINT}") from None
    if not path.is_file():
        raise VadUnavailable(f"silero-vad has no {MODEL_FILE}; reinstall it: {INSTALL_HINT}")
    return path


def model_identity() -> dict:
    """What determines the probabilities, for cache keys."""
    from talkstudio.cache import file_digest

    return {"model": file_digest(model_path()), "window": WINDOW, "context": CONTEXT, "rate": RATE}


class SileroVad:
    """Speech probabilities of consecutive windows of one stream; feed windows in order."""

    def __init__(self):
        try:
            import onnxruntime
        except ImportError:
            raise VadUnavailable(f"onnxruntime is not installed; {INSTALL_HINT}") from None
        options = onnxruntime.SessionOptions()
        # one window at a time is latency-bound: more threads only compete with the rest of the render
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(model_path()), options, providers=["CPUExecutionProvider"])
        self.state = np.zeros(STATE_SHAPE, np.float32)
        self.context = np.zeros(CONTEXT, np.float32)
        self.rate = np.array(RATE, np.int64)

    def probabilities(self, windows: np.ndarray) -> np.ndarray:
        """(n, WINDOW) float32 samples at 16 kHz -> (n,) speech probabilities, continuing the stream."""
        found = np.empty(len(windows), np.float32)
        for i, window in enumerate(windows):
            model_input = np.concatenate([self.context, window])[None]
            output, self.state = self.session.run(None, {"input": model_input, "state": self.state, "sr": self.rate})
            self.context = window[-CONTEXT:]
            found[i] = output[0, 0]
        return found
