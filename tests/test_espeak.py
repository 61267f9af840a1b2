"""The embedded espeak-ng engine: real synthesis through ctypes, no apt package."""

import subprocess
import sys

import numpy as np
import pytest

from talkstudio.audio_io import median_f0
from talkstudio.screenplay import Voice
from talkstudio.voices import engine_names, get_engine
from talkstudio.voices.espeak import PRESETS, to_ssml

engine = get_engine("espeak")


def speak(text: str, **voice):
    return engine.synthesize(text, Voice(**voice))


def test_registry_and_version():
    assert "espeak" in engine_names()
    assert engine.version().startswith("espeak-ng 1.52")
    ids = {v.id for v in engine.voices()}
    assert set(PRESETS) <= ids and "en-gb" in ids and "+f3" in ids


def test_speech_is_mono_float_with_ordered_word_timings():
    speech = speak("The quick brown fox jumps over the lazy dog.", id="ava")
    assert speech.samples.dtype == np.float32 and speech.samples.ndim == 1
    assert speech.rate == 22050 and 1.0 < speech.duration < 5.0
    assert np.abs(speech.samples).max() <= 1.0 and np.abs(speech.samples).max() > 0.1
    assert [w.text for w in speech.words] == ["The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog"]
    for a, b in zip(speech.words, speech.words[1:]):
        assert a.start <= a.end <= b.start + 1e-9
    assert speech.words[-1].end <= speech.duration + 1e-9
    assert speech.phonemes and all(p.start <= p.end for p in speech.phonemes)


def test_leading_and_trailing_silence_is_trimmed():
    speech = speak("Hello.", id="ben")
    edge = int(0.02 * speech.rate)
    assert np.abs(speech.samples[:edge]).max() < 0.05 and np.abs(speech.samples).max() > 0.1
    assert speech.words[0].start < 0.05


@pytest.mark.parametrize("text, words", [
    ('She said "no" & left.', ["She", "said", "no", "&", "left"]),
    ("if a < b then <speak> is just text", None),
    ("It's Ben's turn, isn't it?", ["It's", "Ben's", "turn", "isn't", "it"]),
    ("Emoji 😀 here", None),
    ("Привет, как дела?", ["Привет", "как", "дела"]),
    ("Tab\tand\nnewline\x00control", None),
])
def test_special_characters_are_spoken_as_text(text, words):
    speech = speak(text, id="ava")
    assert speech.duration > 0.3
    if words is not None:
        assert [w.text for w in speech.words] == words


def test_markup_is_escaped_not_interpreted():
    ssml, offsets = to_ssml('a <break time="5s"/> & "b"')
    assert "<break" not in ssml and "&lt;break" in ssml and "&amp;" in ssml and "&quot;" in ssml
    assert len(offsets) == len(ssml)
    # a break tag, if it were interpreted, would add five seconds of silence
    assert speak('one <break time="5s"/> two', id="ben").duration < 4.0


def test_non_latin_voices():
    ru = speak("Привет, мир", id="ru")
    ja = speak("こんにちは 世界", id="ja")
    assert ru.duration > 0.5 and ja.duration > 0.5


def test_rate_and_pitch_change_the_voice():
    base = speak("Counting slowly from one to ten.", id="en-us")
    fast = speak("Counting slowly from one to ten.", id="en-us", rate=2.0)
    assert fast.duration < 0.7 * base.duration
    low = speak("Aaah, a long open vowel.", id="en-us", pitch=-6)
    high = speak("Aaah, a long open vowel.", id="en-us", pitch=6)
    assert _median_f0(high) > 1.6 * _median_f0(low)


def _median_f0(speech) -> float:
    return median_f0(speech.samples, speech.rate)


def test_presets_are_clearly_distinct():
    text = "We should probably talk about what happened at the harbour last night."
    features = {}
    for name in PRESETS:
        s = speak(text, id=name)
        spectrum = np.abs(np.fft.rfft(s.samples, n=1 << 17))
        bands = np.add.reduceat(spectrum, np.linspace(0, len(spectrum) - 1, 25).astype(int))
        features[name] = (s.duration, _median_f0(s), bands / bands.sum())
    names = list(features)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            da, fa, sa = features[a]
            db, fb, sb = features[b]
            pitch_apart = abs(12 * np.log2(fa / fb)) > 1.0
            tempo_apart = abs(da - db) / min(da, db) > 0.04
            timbre_apart = np.abs(sa - sb).sum() > 0.08
            assert pitch_apart or tempo_apart or timbre_apart, (a, b)


def test_same_text_and_voice_give_the_same_bytes_across_processes():
    code = ("import hashlib; from talkstudio.voices import get_engine; from talkstudio.screenplay import Voice;"
            "e = get_engine('espeak'); v = Voice(id='clara');"
            "e.synthesize('warm up with another sentence', v);"
            "print(hashlib.sha256(e.synthesize('Determinism matters for caching.', v).samples.tobytes()).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
               for _ in range(2)}
    here = speak("Determinism matters for caching.", id="clara")
    import hashlib
    assert digests == {hashlib.sha256(here.samples.tobytes()).hexdigest() + "\n"}


def test_check_reports_unknown_language_and_variant():
    assert engine.check(Voice(id="ava")) == []
    assert engine.check(Voice(id="en-gb+m3")) == []
    assert "no language" in engine.check(Voice(id="qq"))[0]
    assert "no variant" in engine.check(Voice(id="en-us+nope"))[0]
    assert "espeak uses no model" in engine.check(Voice(id="ava", model="x.onnx"))[0]
