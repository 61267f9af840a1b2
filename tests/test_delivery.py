"""Delivery hints, the pronunciation lexicon and `talkstudio say`."""

import json

import numpy as np
import pytest
from scipy.io import wavfile

from conftest import run_cli
from talkstudio.cache import Cache
from talkstudio.delivery import Respelling, apply_lexicon, rendition, restore_words
from talkstudio.progress import Reporter
from talkstudio.render import render_audio
from talkstudio.screenplay import Delivery, Voice
from talkstudio.voices import Word, get_engine


def test_lexicon_respells_whole_words_and_capitals_match_exactly():
    lexicon = {"NASA": "nasa", "Siobhan": "shiv-awn", "gif": "jif"}
    spoken, made = apply_lexicon("Siobhan, NASA and a GIF; nasa's Siobhans.", lexicon)
    assert spoken == "shiv-awn, nasa and a jif; nasa's Siobhans."
    assert [m.written for m in made] == ["Siobhan", "NASA", "GIF"]


def test_respelled_words_get_their_written_text_back():
    words = [Word("shiv", 0.0, 0.2), Word("awn", 0.2, 0.5), Word("works", 0.5, 0.9)]
    restored = restore_words(words, [Respelling("Siobhan", "shiv awn")])
    assert [(w.text, w.start, w.end) for w in restored] == [("Siobhan", 0.0, 0.5), ("works", 0.5, 0.9)]


def test_hints_are_native_where_the_engine_can_and_approximated_elsewhere():
    voice = Voice(id="ava", rate=1.0)
    hints = Delivery(whisper=True, rate=1.2, volume=0.8)
    native = rendition(voice, hints, frozenset({"whisper"}))
    assert native.voice.whisper and native.gain == pytest.approx(0.8) and native.voice.rate == pytest.approx(1.2)
    approximated = rendition(voice, hints, frozenset())
    assert not approximated.voice.whisper
    assert approximated.gain == pytest.approx(0.4) and approximated.voice.rate == pytest.approx(1.2 * 0.95)
    higher = Delivery(pitch=3.0)
    assert rendition(voice, higher, frozenset({"pitch"})).voice.pitch == 3.0
    assert rendition(voice, higher, frozenset()).voice.pitch == 0.0  # no pitch control: the voice's own


def test_espeak_whispers_and_stresses_natively():
    engine = get_engine("espeak")
    plain, whisper = Voice(id="ben"), Voice(id="ben", whisper=True)
    assert engine.cache_identity(whisper)["voice"].endswith("+whisper")
    stressed = engine.cache_identity(Voice(id="ben", emphasis=True))
    assert stressed["range"] > engine.cache_identity(plain)["range"] and stressed["wpm"] < engine.cache_identity(plain)["wpm"]
    from talkstudio.audio_io import median_f0

    said, breathed = engine.synthesize("Can you hear me now?", plain), engine.synthesize("Can you hear me now?", whisper)
    # a whisper has no voicing: far fewer frames carry a pitch
    assert np.isnan(median_f0(breathed.samples, breathed.rate)) or \
        median_f0(breathed.samples, breathed.rate) != pytest.approx(median_f0(said.samples, said.rate), rel=0.05)


SCRIPT = """\
audio: {loudness: -30}
LEXICON
cast:
  ana: {voice: ava}
  ben: {voice: ben}
scenes:
  - lines:
      - ana: Siobhan went to NASA.
      - ana: Good for her.
      - ana: Good for her.
        delivery: {volume: 0.5}
      - ben: Quietly now.
        delivery: whispering, slowly
"""


def _audio(write_script, tmp_path, lexicon: str, name: str):
    script = write_script(SCRIPT.replace("LEXICON", lexicon), f"{name}.yaml")
    result = render_audio(script, tmp_path / name, Cache(tmp_path / "cache"), Reporter(quiet=True))
    return result, json.loads((tmp_path / name / "cues.json").read_text())


def test_a_lexicon_change_resynthesises_only_the_lines_it_touches(write_script, tmp_path):
    first, cues = _audio(write_script, tmp_path, "", "plain")
    assert (first.synthesized, first.cached) == (3, 1)  # the repeated line is spoken once
    second, cues = _audio(write_script, tmp_path, "lexicon: {Siobhan: shiv-awn}", "respelled")
    assert (second.synthesized, second.cached) == (1, 3)
    assert cues["cues"][0]["text"] == "Siobhan went to NASA."  # subtitles keep the written text
    assert [w[0] if isinstance(w, list) else w["text"] for w in cues["cues"][0]["words"]][0] == "Siobhan"


def test_line_volume_scales_that_line_alone(write_script, tmp_path):
    _, cues = _audio(write_script, tmp_path, "", "levels")
    rate, ana = wavfile.read(tmp_path / "levels" / "tracks" / "ana.wav")
    plain, softer = cues["cues"][1], cues["cues"][2]

    def samples(cue):
        return ana[round(cue["start"] * rate):round(cue["start"] * rate) + round((cue["end"] - cue["start"]) * rate)]

    # the same synthesis twice; a quiet target keeps the limiter out, so the level scales exactly
    assert np.abs(samples(softer)).max() / np.abs(samples(plain)).max() == pytest.approx(0.5, rel=1e-3)


def test_bad_delivery_word_is_an_input_error_with_its_line(write_script, tmp_path):
    script = write_script(SCRIPT.replace("LEXICON", "").replace("whispering, slowly", "grumpily"))
    result = run_cli("validate", script)
    assert result.returncode == 2
    assert "script.yaml:13:" in result.stderr and "unknown delivery word 'grumpily'" in result.stderr


def test_say_writes_the_line_a_character_would_say(write_script, tmp_path):
    script = write_script(SCRIPT.replace("LEXICON", "lexicon: {NASA: nasa}"))
    out = tmp_path / "ana.wav"
    result = run_cli("say", "Hello from NASA.", "--script", script, "-c", "ana", "-o", out, "--cache", tmp_path / "c")
    assert result.returncode == 0, result.stderr
    rate, samples = wavfile.read(out)
    assert rate == 22050 and len(samples) > 0.5 * rate and np.abs(samples).max() > 0.05
    spoken = get_engine("espeak").synthesize("Hello from nasa.", Voice(id="ava"))
    assert len(samples) == len(spoken.samples)  # the lexicon was applied, in the character's voice


@pytest.mark.parametrize("args, message", [
    (["-v", "nobody"], "espeak has no language 'nobody'"),
    (["--rate", "9"], "--rate: Input should be less than or equal to 4"),
    (["--delivery", "grumpy"], "unknown delivery word 'grumpy'"),
    (["-c", "ana"], "--character needs --script"),
])
def test_say_rejects_bad_options_plainly(args, message, tmp_path):
    result = run_cli("say", "Hello.", "-o", tmp_path / "x.wav", *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
