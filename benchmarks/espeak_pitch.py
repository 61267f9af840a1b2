"""Measure how espeak-ng's pitch parameter maps to semitones (used by voices/espeak.py).

Speaks one sentence at several pitch parameters, estimates the median F0 of
voiced frames by autocorrelation, and prints the parameter steps per semitone.
Run: python benchmarks/espeak_pitch.py
"""

import numpy as np

from talkstudio.audio_io import median_f0
from talkstudio.voices.espeak import _in_pristine_child, _lib

TEXT = "A quiet morning on the harbour, and all the boats are still asleep."


def main() -> None:
    library = _lib()
    points = []
    for parameter in (20, 35, 50, 65, 80):
        pcm, _ = _in_pristine_child(library.synth, f"<speak>{TEXT}</speak>", "en-us", 175, parameter, 50)
        f0 = median_f0(pcm.astype(np.float32) / 32768, library.rate)
        points.append((parameter, f0))
        print(f"pitch parameter {parameter:3d}: median F0 {f0:6.1f} Hz")
    params = np.array([p for p, _ in points], float)
    semitones = 12 * np.log2(np.array([f for _, f in points]) / points[2][1])
    slope = np.polyfit(semitones, params, 1)[0]
    print(f"steps per semitone: {slope:.2f}")


if __name__ == "__main__":
    main()
