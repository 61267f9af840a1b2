"""The concat-pad timeline, end to end through `talkstudio audio`, and its parts."""

import json
import subprocess

import numpy as np
import pytest
from scipy.io import wavfile

from conftest import EXAMPLES, run_cli
from talkstudio.cache import Cache
from talkstudio.loudness import integrated_loudness, limiter_curve, normalise, true_peak
from talkstudio.progress import Reporter
from talkstudio.render import render_audio
from talkstudio.timeline import FrameClock


def load_outputs(out):
    cues = json.loads((out / "cues.json").read_text())
    tracks = {}
    for speaker in cues["speakers"]:
        rate, samples = wavfile.read(out / speaker["track"])
        assert rate == cues["sample_rate"] and samples.dtype == np.float32
        tracks[speaker["id"]] = samples
    rate, mix = wavfile.read(out / "mix.wav")
    return cues, tracks, mix


@pytest.fixture(scope="module", params=EXAMPLES, ids=lambda p: p.stem)
def example_outputs(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param.stem)
    result = run_cli("audio", request.param, "-o", out, "--cache", out / "cache")
    assert result.returncode == 0, result.stderr
    return out, result


def test_tracks_are_concat_padded(example_outputs):
    out, _ = example_outputs
    cues, tracks, mix = load_outputs(out)
    lengths = {len(t) for t in tracks.values()} | {len(mix)}
    assert lengths == {cues["samples"]}
    for speaker, track in tracks.items():
        inside = np.zeros(len(track), bool)
        for cue in cues["cues"]:
            if cue["speaker"] == speaker:
                inside[cue["start_sample"]:cue["end_sample"]] = True
                assert np.any(track[cue["start_sample"]:cue["end_sample"]] != 0)
        assert np.all(track[~inside] == 0.0), f"{speaker} has sound outside its cues"


def test_mix_is_the_sum_of_the_tracks_at_the_target_loudness(example_outputs):
    out, _ = example_outputs
    cues, tracks, mix = load_outputs(out)
    total = np.sum(list(tracks.values()), axis=0, dtype=np.float32)
    np.testing.assert_allclose(mix, total, atol=1e-6)
    loud = cues["loudness"]
    measured = integrated_loudness(mix, cues["sample_rate"])
    assert abs(measured - -16.0) < 0.5 and abs(measured - loud["integrated_lufs"]) < 0.01
    assert 20 * np.log10(true_peak(mix)) < -1.0
    assert np.abs(mix).max() < 1.0


def test_cue_frames_agree_with_seconds(example_outputs):
    out, _ = example_outputs
    cues, _, _ = load_outputs(out)
    fps, rate = cues["fps"], cues["sample_rate"]
    assert cues["frames"] == cues["scenes"][-1]["end_frame"]
    assert abs(cues["frames"] / fps - cues["duration"]) < 1 / fps
    for cue in cues["cues"]:
        assert cue["start"] == pytest.approx(cue["start_sample"] / rate)
        assert cue["end"] == pytest.approx(cue["end_sample"] / rate)
        assert cue["start_frame"] == round(cue["start"] * fps) and cue["end_frame"] == round(cue["end"] * fps)
        assert cue["words"], "espeak lines carry word timings"
        for word in cue["words"]:
            assert cue["start"] - 1e-6 <= word["start"] <= word["end"] <= cue["end"] + 1e-6
            assert abs(word["start_frame"] - word["start"] * fps) <= 0.5 + 1e-6
        assert cue["source"].endswith(tuple(f":{n}" for n in range(1, 200)))
    for a, b in zip(cues["scenes"], cues["scenes"][1:]):
        assert a["end_frame"] == b["start_frame"] and a["end_sample"] == b["start_sample"]
        assert b["start_sample"] == round(b["start_frame"] * rate / fps)


def test_audio_prints_the_timeline_table(example_outputs):
    _, result = example_outputs
    assert "speaker" in result.stdout and "frames" in result.stdout and "LUFS" in result.stdout


def test_layout_follows_pauses_and_overlaps(write_script, tmp_path):
    script = write_script("""
        timing: {lead_in: 0.5, gap: 0.25, tail: 1.0}
        cast:
          ana: {voice: ava}
          ben: {voice: ben}
        scenes:
          - id: one
            lines:
              - ana: First line from Ana, reasonably long.
              - ben: Ben answers.
              - ana: Ana cuts in.
                overlap: 0.4
              - ben: After a long pause.
                pause: 2
          - id: two
            lines:
              - ben: A new scene.
    """)
    result = render_audio(script, tmp_path / "out", Cache(tmp_path / "cache"), Reporter(quiet=True))
    c = result.cues["cues"]
    assert c[0]["start"] == pytest.approx(0.5, abs=1e-4)
    assert c[1]["start"] - c[0]["end"] == pytest.approx(0.25, abs=1e-4)
    assert c[1]["end"] - c[2]["start"] == pytest.approx(0.4, abs=1e-4)  # the overlap
    assert c[3]["start"] - max(c[1]["end"], c[2]["end"]) == pytest.approx(2.0, abs=1e-4)
    one, two = result.cues["scenes"]
    assert one["end"] - c[3]["end"] >= 1.0 - 1e-4  # tail, then padded to a whole frame
    assert one["end"] - c[3]["end"] < 1.0 + 1 / 25 + 1e-4
    assert c[4]["start"] - two["start"] == pytest.approx(0.5, abs=1e-4)  # scenes are laid out alone
    _, tracks, _ = load_outputs(tmp_path / "out")
    both = (tracks["ana"] != 0) & (tracks["ben"] != 0)
    assert both.sum() > 0.3 * 22050  # the interruption really overlaps


def test_recorded_lines_are_placed_like_spoken_ones(write_script, tmp_path):
    rate = 16000
    t = np.arange(int(1.5 * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    wavfile.write(tmp_path / "take.wav", rate, tone)
    script = write_script("""
        audio: {sample_rate: 24000}
        cast:
          ana: {voice: ava}
          guest: {}
        scenes:
          - lines:
              - ana: Welcome our guest.
              - speaker: guest
                audio: take.wav
                text: A recorded answer.
                pause: 0.5
              - ana: Thanks.
    """)
    result = render_audio(script, tmp_path / "out", Cache(tmp_path / "cache"), Reporter(quiet=True))
    cue = result.cues["cues"][1]
    assert result.cues["sample_rate"] == 24000
    assert cue["audio"].endswith("take.wav") and cue["text"] == "A recorded answer."
    assert cue["end"] - cue["start"] == pytest.approx(1.5, abs=2e-3)
    assert cue["start"] - result.cues["cues"][0]["end"] == pytest.approx(0.5, abs=1e-4)
    _, tracks, _ = load_outputs(tmp_path / "out")
    segment = tracks["guest"][cue["start_sample"]:cue["end_sample"]]
    spectrum = np.abs(np.fft.rfft(segment))
    assert abs(np.argmax(spectrum) * 24000 / len(segment) - 220) < 2  # resampled, not re-pitched


def test_volume_scales_one_speaker_without_new_synthesis(write_script, tmp_path):
    # a quiet target keeps the limiter out of it, so levels scale exactly
    text = "audio: {loudness: -30}\ncast:\n  ana: {voice: {id: ava, volume: VOL}}\n  ben: {voice: ben}\nscenes:\n  - lines:\n      - ana: Level check one.\n      - ben: Level check two.\n"
    levels = []
    for volume in ("1.0", "0.5"):
        script = write_script(text.replace("VOL", volume))
        result = render_audio(script, tmp_path / f"out{volume}", Cache(tmp_path / "cache"), Reporter(quiet=True))
        _, tracks, _ = load_outputs(tmp_path / f"out{volume}")
        levels.append(np.sqrt(np.mean(tracks["ana"] ** 2)) / np.sqrt(np.mean(tracks["ben"] ** 2)))
    assert result.synthesized == 0 and result.cached == 2
    assert levels[1] / levels[0] == pytest.approx(0.5, rel=1e-3)


def test_frame_clock_is_exact_for_fractional_rates():
    clock = FrameClock(22050, 23.976)
    assert clock.frame_of(22050) == 24
    assert clock.sample_of(clock.frame_of(10 ** 7)) == pytest.approx(10 ** 7, abs=22050 / 23.976)
    assert clock.frames_covering(1) == 1 and clock.frames_covering(0) == 0


def test_limiter_curve_never_lets_a_peak_through():
    rng = np.random.default_rng(0)
    peaks = np.abs(rng.standard_normal(50000)).astype(np.float32) * rng.choice([0.1, 3.0], 50000, p=[0.99, 0.01])
    curve = limiter_curve(peaks, 0.8, 22050)
    assert np.all(curve * peaks <= 0.8 + 1e-6)
    assert curve.max() <= 1.0 and np.all(np.abs(np.diff(curve)) < 0.05)


def _apply(curve, total, step):
    return np.concatenate([curve.apply(s, min(s + step, total)) for s in range(0, total, step)])


def test_normalise_reaches_target_without_clipping_and_blocks_do_not_matter():
    rate = 22050
    rng = np.random.default_rng(1)
    noise = rng.standard_normal(rate * 30).astype(np.float32) * 0.02
    noise[::2000] = 0.9  # sharp clicks make the plain gain hit the ceiling
    curve, loudness = normalise(lambda s, e: noise[s:e], len(noise), rate, -16.0, -1.0)
    out = _apply(curve, len(noise), 100_003)
    assert abs(integrated_loudness(out, rate) + 16.0) < 0.5
    assert 20 * np.log10(true_peak(out)) < -1.0
    assert loudness.limited_db < 0 and loudness.integrated_lufs == pytest.approx(integrated_loudness(out, rate), abs=1e-3)
    assert np.array_equal(out, _apply(curve, len(noise), 7_777))  # the curve is the same in any blocks
    quiet_tone = (0.01 * np.sin(np.arange(rate * 2) * 0.05)).astype(np.float32)
    curve, loudness = normalise(lambda s, e: quiet_tone[s:e], len(quiet_tone), rate, -16.0, -1.0)
    assert curve.ceiling is None and loudness.limited_db == 0.0


@pytest.mark.parametrize("seconds", [0.5, 3.0, 47.3])
def test_block_meter_matches_pyloudnorm(seconds):
    import pyloudnorm

    rate = 22050
    rng = np.random.default_rng(int(seconds * 10))
    n = int(seconds * rate)
    envelope = np.repeat(rng.uniform(0, 0.3, n // 2205 + 1), 2205)[:n]
    signal = (rng.standard_normal(n) * envelope).astype(np.float32)
    expected = pyloudnorm.Meter(rate).integrated_loudness(signal.astype(np.float64))
    assert integrated_loudness(signal, rate) == pytest.approx(expected, abs=1e-9)


def test_a_recorded_line_is_read_from_the_cache_where_it_is_mixed(tmp_path):
    """Decoded once, block by block, into raw samples in the cache; read back only where sliced."""
    from talkstudio.audio_io import ffmpeg_exe, read_audio
    from talkstudio.cache import Cache
    from talkstudio.speech import RecordingOnDisk, _clip_samples, _recorded_cached

    audio = tmp_path / "talk.flac"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine=f=220:d=30,volume=0.5", "-ar", "22050",
                    "-c:a", "flac", str(audio)], check=True)
    stored = _recorded_cached(audio, 16000, Cache(tmp_path / "cache"))
    samples = _clip_samples(stored, 16000)
    whole = read_audio(audio, 16000)
    assert isinstance(samples, RecordingOnDisk) and len(samples) == len(whole)
    assert np.array_equal(samples[1000:250000], whole[1000:250000])
    assert np.array_equal(samples[len(whole) - 5:len(whole) + 10], whole[-5:])


def test_an_overlap_can_be_a_share_of_the_line_before(write_script, tmp_path):
    from talkstudio.checks import load_screenplay
    from talkstudio.speech import speak_all, timeline_rate
    from talkstudio.timeline import build_timeline

    screenplay = load_screenplay(write_script("""
        cast: {ana: {voice: ava}, ben: {voice: dan}}
        scenes:
          - lines:
              - ana: A sentence long enough to be spoken over by the other voice.
              - ben: Me too.
                overlap: 75%
    """))
    rate = timeline_rate(screenplay)
    clips, _ = speak_all(screenplay, Cache(tmp_path / "cache"), rate, Reporter(quiet=True))
    first, second = build_timeline(screenplay, clips, rate).cues
    assert (second.start - first.start) / (first.end - first.start) == pytest.approx(0.25, abs=0.01)
