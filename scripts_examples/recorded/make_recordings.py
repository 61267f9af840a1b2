"""Make this example's two "microphone" recordings: espeak voices taking turns, each also heard
20 dB down on the other microphone (bleed), over a little room noise. Replace them with your own.

Run: python scripts_examples/recorded/make_recordings.py
"""

import subprocess
from pathlib import Path

import numpy as np

from talkstudio.audio_io import ffmpeg_exe, resample
from talkstudio.screenplay import Voice
from talkstudio.voices import get_engine

HERE = Path(__file__).resolve().parent
TURNS = [  # host, start (s), words
    ("maya", 0.8, "Welcome back to Morning Signal. Today, the lighthouse keepers."),
    ("theo", 4.9, "Thanks for having me. It is a strange job, and a lonely one."),
    ("maya", 9.2, "Lonely how?"),
    ("theo", 10.3, "Weeks without a visitor, and the radio for company."),
    ("maya", 13.2, "Right."),  # over the end of Theo's line
]
VOICES = {"maya": "ava", "theo": "dan"}
FILES = {"maya": ("maya.m4a", 44100), "theo": ("theo.mp3", 48000)}  # any format ffmpeg reads
SECONDS, BLEED, NOISE = 15.5, 0.1, 2e-4


def main() -> None:
    engine = get_engine("espeak")
    tracks = {host: np.zeros(int(SECONDS * rate), np.float32) for host, (_, rate) in FILES.items()}
    for speaker, start, words in TURNS:
        speech = engine.synthesize(words, Voice(id=VOICES[speaker]))
        for host, (_, rate) in FILES.items():
            samples = resample(speech.samples, speech.rate, rate)
            at = int((start + (0 if host == speaker else 0.004)) * rate)
            tracks[host][at:at + len(samples)] += samples * (1.0 if host == speaker else BLEED)
    noise = np.random.default_rng(0)
    for host, (name, rate) in FILES.items():
        raw = (tracks[host] + noise.normal(0, NOISE, len(tracks[host]))).astype("<f4").tobytes()
        subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "f32le", "-ar", str(rate), "-ac", "1",
                        "-i", "-", "-b:a", "64k", str(HERE / name)],
                       input=raw, check=True)


if __name__ == "__main__":
    main()
