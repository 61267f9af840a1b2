"""Recorded episodes: speech found on two tracks with bleed, transcripts, and the `podcast` command.

The tracks are made here: espeak speech placed at known times on each host's track, each line also
on the other track 20 dB down and 3 ms late (bleed), with a little noise; one track is 44.1 kHz WAV,
the other 48 kHz FLAC. The truth is where each line's sound begins and ends.
"""

import json
import subprocess

import numpy as np
import pytest

from conftest import run_cli
from talkstudio.audio_io import ffmpeg_exe, resample
from talkstudio.cache import Cache
from talkstudio.podcast import Detection, analyse, detect_speech
from talkstudio.progress import Reporter
from talkstudio.screenplay import Voice
from talkstudio.transcript import Entry, align
from talkstudio.voices import get_engine

pytest.importorskip("onnxruntime")
pytest.importorskip("silero_vad.data", reason="pip install 'talkstudio[podcast]'")

TOLERANCE_S = 0.1
BLEED_GAIN = 0.1  # -20 dB
LINES = [  # speaker, start (s), text
    ("ana", 1.0, "Welcome back to the show."),
    ("ben", 3.6, "Thanks, glad to be here today."),
    ("ana", 6.8, "Let us talk about the weather."),
    ("ben", 7.5, "Sorry, go on please."),  # talks over Ana: real overlap, kept on both
    ("ana", 11.0, "Right."),
]
VOICES = {"ana": "ava", "ben": "dan"}
FORMATS = {"ana": (44100, "wav"), "ben": (48000, "flac")}
DURATION_S = 13.0


def _spoken(text: str, voice: str, rate: int) -> np.ndarray:
    """espeak speech at `rate`, without its leading and trailing silence."""
    speech = get_engine("espeak").synthesize(text, Voice(id=voice))
    samples = resample(speech.samples, speech.rate, rate)
    sounding = np.flatnonzero(np.abs(samples) > 0.01)
    return samples[sounding[0]:sounding[-1] + 1]


@pytest.fixture(scope="module")
def episode(tmp_path_factory):
    folder = tmp_path_factory.mktemp("episode")
    tracks = {name: np.zeros(int(DURATION_S * rate), np.float32) for name, (rate, _) in FORMATS.items()}
    truth = {name: [] for name in FORMATS}
    for speaker, start, text in LINES:
        for name, (rate, _) in FORMATS.items():
            samples = _spoken(text, VOICES[speaker], rate)
            at = int(start * rate) + (0 if name == speaker else int(0.003 * rate))
            tracks[name][at:at + len(samples)] += samples * (1.0 if name == speaker else BLEED_GAIN)
            if name == speaker:
                truth[name].append((start, start + len(samples) / rate))
    noise = np.random.default_rng(0)
    files = {}
    for name, (rate, suffix) in FORMATS.items():
        raw = folder / f"{name}.f32"
        (tracks[name] + noise.normal(0, 3e-4, len(tracks[name]))).astype("<f4").tofile(raw)
        files[name] = folder / f"{name}.{suffix}"
        subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "f32le", "-ar", str(rate), "-ac", "1", "-i", str(raw),
                        str(files[name])], check=True)
        raw.unlink()
    cast = folder / "cast.yaml"
    cast.write_text("title: Test episode\nvideo: {size: 160x96}\ncast:\n  ana: {name: Ana}\n  ben: {name: Ben}\n")
    return {"folder": folder, "files": files, "truth": truth, "cast": cast, "cache": folder / "cache"}


def _tracks(episode):
    return [(name, episode["files"][name]) for name in ("ana", "ben")]


def _close(found, truth):
    return abs(found[0] - truth[0]) <= TOLERANCE_S and abs(found[1] - truth[1]) <= TOLERANCE_S


def test_regions_match_the_truth_and_bleed_makes_none(episode):
    regions, duration = detect_speech(_tracks(episode), Detection(), Cache(episode["cache"]), Reporter(quiet=True))
    assert duration == pytest.approx(DURATION_S, abs=0.01)
    for name, truth in episode["truth"].items():
        assert len(regions[name]) == len(truth), (name, regions[name], truth)
        for found, expected in zip(regions[name], truth):
            assert _close(found, expected), (name, found, expected)


def test_the_vad_does_hear_the_bleed(episode):
    """The bleed is loud enough to be called speech: without resolving it, Ben would get Ana's lines."""
    ben = analyse(episode["files"]["ben"], Cache(episode["cache"]))
    start, end = episode["truth"]["ana"][0]
    window = 512 / 16000
    assert ben.probabilities[int(start / window) + 3:int(end / window) - 3].mean() > 0.5


def test_talking_over_each_other_stays_overlap(episode):
    regions, _ = detect_speech(_tracks(episode), Detection(), Cache(episode["cache"]), Reporter(quiet=True))
    ana, ben = regions["ana"][1], regions["ben"][1]
    truth_overlap = episode["truth"]["ana"][1][1] - episode["truth"]["ben"][1][0]
    assert min(ana[1], ben[1]) - max(ana[0], ben[0]) == pytest.approx(truth_overlap, abs=2 * TOLERANCE_S)


def test_plain_lines_take_the_regions_of_their_speaker_in_order():
    regions = {"ana": [(0.0, 1.0), (1.2, 2.0), (5.0, 8.0), (8.5, 11.0)], "ben": [(2.5, 4.5)]}
    entries = [Entry("Hi there, everyone, and welcome.", "ana", None, None, 1), Entry("Hello.", "ben", None, None, 2),
               Entry("So today we have a long story to tell about boats and the sea.", "ana", None, None, 3)]
    aligned = align(entries, regions)
    by_text = {cue["text"]: (cue["speaker"], cue["start"], cue["end"]) for cue in aligned.subtitles}
    assert by_text == {"Hi there, everyone, and welcome.": ("ana", 0.0, 2.0), "Hello.": ("ben", 2.5, 4.5),
                       "So today we have a long story to tell about boats and the sea.": ("ana", 5.0, 11.0)}
    assert " ".join(aligned.region_texts["ana"][2:]) == entries[2].text


def test_more_lines_than_regions_share_a_region_by_length():
    regions = {"ana": [(0.0, 3.0)]}
    entries = [Entry("One two.", "ana", None, None, 1), Entry("Three four five six.", "ana", None, None, 2)]
    aligned = align(entries, regions)
    first, second = aligned.subtitles
    assert (first["start"], second["end"]) == (0.0, 3.0)
    assert first["end"] == second["start"] == pytest.approx(0.9, abs=0.05)
    assert aligned.region_texts["ana"] == ["One two. Three four five six."]


def _podcast(episode, *args):
    return run_cli("podcast", "--cast", episode["cast"], "--track", f"ana={episode['files']['ana']}",
                   "--track", f"ben={episode['files']['ben']}", "--cache", episode["cache"], *args)


def test_podcast_with_srt_transcript(episode):
    srt = episode["folder"] / "episode.srt"
    srt.write_text("1\n00:00:01,150 --> 00:00:02,300\nWelcome back to the show.\n\n"
                   "2\n00:00:03,500 --> 00:00:05,300\nBen: Thanks, glad to be here today.\n\n"
                   "3\n00:00:06,800 --> 00:00:08,200\n<v Ana>Let us talk about the weather.\n\n"
                   "4\n00:00:07,600 --> 00:00:08,600\nSorry, go on please.\n\n"
                   "5\n00:00:11,000 --> 00:00:11,400\nRight.\n")
    target = episode["folder"] / "out" / "with-srt.mp4"
    result = _podcast(episode, "--transcript", srt, "-o", target)
    assert result.returncode == 0, result.stderr
    cues = json.loads((target.with_suffix("") / "cues.json").read_text())
    spoken = [(c["speaker"], c["text"]) for c in cues["cues"]]
    assert spoken == [(speaker, text) for speaker, _, text in LINES]
    for cue in cues["cues"]:
        truth = next(t for t in episode["truth"][cue["speaker"]] if abs(t[0] - cue["start"]) < 1)
        assert _close((cue["start"], cue["end"]), truth), cue
    sidecar = target.with_suffix(".srt").read_text()
    assert all(text in sidecar for _, _, text in LINES)
    # the transcript's "Ben:" prefix is gone from the text; the label is the subtitles' own, at his first line
    assert sidecar.count("Ben:") == 1 and "<b>Ben:</b> Thanks" in sidecar
    streams = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(target)], capture_output=True, text=True).stderr
    assert "Video: h264" in streams and "Audio: aac" in streams and "Subtitle: mov_text" in streams
    assert "Duration: 00:00:13" in streams

    made = target.stat().st_mtime_ns
    again = _podcast(episode, "--transcript", srt, "-o", target)
    assert again.returncode == 0 and f"up to date {target}" in again.stdout and "episode.srt" not in again.stderr
    assert target.stat().st_mtime_ns == made and "ben: 2 regions" in again.stdout.lower()
    srt.write_text(srt.read_text().replace("Right.", "Alright."))  # a changed input is never up to date
    edited = _podcast(episode, "--transcript", srt, "-o", target)
    assert edited.returncode == 0 and f"wrote {target}" in edited.stdout and "Alright." in target.with_suffix(".srt").read_text()


def test_podcast_without_transcript_has_no_subtitles(episode):
    target = episode["folder"] / "out" / "bare.mp4"
    result = _podcast(episode, "-o", target)
    assert result.returncode == 0, result.stderr
    assert "no subtitles" in result.stdout
    assert target.exists() and not any(target.with_suffix(s).exists() for s in (".srt", ".vtt", ".ass"))
    cues = json.loads((target.with_suffix("") / "cues.json").read_text())["cues"]
    assert len(cues) == len(LINES) and all(cue["text"] == "" for cue in cues)
    streams = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(target)], capture_output=True, text=True).stderr
    assert "Subtitle" not in streams


def test_a_track_for_someone_not_in_the_cast_is_bad_input(episode):
    result = run_cli("podcast", "--cast", episode["cast"], "--track", f"cara={episode['files']['ana']}",
                     "-o", episode["folder"] / "bad.mp4", "--cache", episode["cache"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "'cara' is not in the cast" in result.stderr and "ana, ben" in result.stderr


def test_a_track_that_is_not_audio_is_bad_input(episode):
    result = run_cli("podcast", "--cast", episode["cast"], "--track", f"ana={episode['cast']}",
                     "-o", episode["folder"] / "bad.mp4", "--cache", episode["cache"])
    assert result.returncode == 2 and "no audio stream" in result.stderr and "Traceback" not in result.stderr


def test_a_plain_transcript_naming_an_unknown_speaker_is_bad_input(episode):
    plain = episode["folder"] / "typo.txt"
    plain.write_text("Ana: Welcome back to the show.\nBne: Thanks, glad to be here today.\n")
    result = _podcast(episode, "--transcript", plain, "-o", episode["folder"] / "bad.mp4")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "typo.txt:2" in result.stderr and "did you mean 'ben'" in result.stderr


def test_an_episode_file_lists_its_own_tracks_and_transcript(episode):
    """The same episode as one YAML file: tracks: and transcript: relative to it, no --track needed."""
    folder = episode["folder"]
    (folder / "short.txt").write_text("Ana: Welcome back to the show.\n")
    described = folder / "described.yaml"
    described.write_text(episode["cast"].read_text() + f"tracks:\n  ana: {episode['files']['ana'].name}\n"
                         f"  ben: {episode['files']['ben'].name}\ntranscript: short.txt\n")
    from talkstudio.podcast import load_cast

    loaded = load_cast(described, [])
    assert loaded.tracks == _tracks(episode) and loaded.transcript == folder / "short.txt"
    assert load_cast(described, [("ben", episode["files"]["ben"])]).tracks == [("ben", episode["files"]["ben"])]
    broken = folder / "broken.yaml"
    broken.write_text(episode["cast"].read_text() + "tracks:\n  ana: missing.wav\ntranscript: nowhere.srt\n")
    result = run_cli("podcast", "--cast", broken, "-o", folder / "x.mp4", "--cache", episode["cache"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "track ana=" in result.stderr and "missing.wav: no such file" in result.stderr
    assert "nowhere.srt: no such file" in result.stderr


def _mix(target) -> tuple[np.ndarray, int]:
    from talkstudio.audio_io import read_audio

    rate = json.loads((target.with_suffix("") / "cues.json").read_text())["sample_rate"]
    return read_audio(target.with_suffix("") / "mix.wav", rate), rate


def _outside_speech(episode, rate: int, length: int) -> np.ndarray:
    quiet = np.ones(length, bool)
    for spans in episode["truth"].values():
        for start, end in spans:
            quiet[max(int((start - 0.2) * rate), 0):int((end + 0.2) * rate)] = False
    return quiet


def test_the_video_is_heard_with_the_recordings_as_they_are_or_gated(episode):
    from talkstudio.audio_io import read_audio

    recorded, gated = episode["folder"] / "out" / "recorded.mp4", episode["folder"] / "out" / "gated.mp4"
    assert _podcast(episode, "-o", recorded).returncode == 0
    assert _podcast(episode, "-o", gated, "--soundtrack", "gated").returncode == 0
    heard, rate = _mix(recorded)
    raw = sum(read_audio(path, rate)[:len(heard)] for path in episode["files"].values())
    raw = np.pad(raw, (0, len(heard) - len(raw)))
    assert np.corrcoef(heard, raw)[0, 1] > 0.95  # the recordings summed (the limiter bends the loudest peaks)
    # between turns: the recordings' own noise floor, at the mix's static gain
    quiet = _outside_speech(episode, rate, len(heard))
    gain_db = json.loads((recorded.with_suffix("") / "cues.json").read_text())["loudness"]["gain_db"]
    fitted = np.dot(heard[quiet], raw[quiet]) / np.dot(raw[quiet], raw[quiet])
    assert np.corrcoef(heard[quiet], raw[quiet])[0, 1] > 0.99 and abs(20 * np.log10(fitted) - gain_db) < 0.5
    gated_mix, _ = _mix(gated)
    assert not gated_mix[quiet].any()  # only the detected speech: exact silence between turns
    # the picture is the same either way: the soundtrack never changes a chunk
    assert (gated.with_suffix("") / "tracks" / "ana.wav").read_bytes() == \
        (recorded.with_suffix("") / "tracks" / "ana.wav").read_bytes()
    again = _podcast(episode, "-o", gated, "--soundtrack", "gated")
    assert "up to date" in again.stdout


def test_a_mastered_soundtrack_file_is_heard_as_it_is(episode):
    from scipy.io import wavfile

    folder = episode["folder"]
    rate = 22050
    t = np.arange(int(15.0 * rate)) / rate  # two seconds longer than the recordings
    left, right = 0.2 * np.sin(2 * np.pi * 220 * t), 0.1 * np.sin(2 * np.pi * 330 * t)
    np.stack([left, right], axis=1).astype("<f4").tofile(folder / "master.f32")
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "f32le", "-ar", str(rate), "-ac", "2",
                    "-i", str(folder / "master.f32"), "-sample_fmt", "s32", str(folder / "master.flac")], check=True)
    target = folder / "out" / "mastered.mp4"
    result = _podcast(episode, "-o", target, "--soundtrack", folder / "master.flac")
    assert result.returncode == 0, result.stderr
    told = " ".join(result.stderr.split())
    assert "lasts 15.0 s and the recordings 13.0 s: the video follows the recordings" in told
    cues = json.loads((target.with_suffix("") / "cues.json").read_text())
    mix_rate, heard = wavfile.read(target.with_suffix("") / "mix.wav")
    assert mix_rate == cues["sample_rate"] and heard.shape == (cues["samples"], 2)  # its channels, the video's length
    seconds = np.arange(len(heard)) / mix_rate
    middle = slice(mix_rate, len(heard) - mix_rate)
    for channel, (level, hz) in enumerate(((0.2, 220), (0.1, 330))):
        expected = level * np.sin(2 * np.pi * hz * seconds)
        assert np.abs(heard[middle, channel] - expected[middle]).max() < 1e-3  # levels untouched, only resampled
    loudness = cues["loudness"]
    assert loudness["gain_db"] == 0 and loudness["limited_db"] == 0 and -20 < loudness["integrated_lufs"] < -10
    streams = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(target)], capture_output=True, text=True).stderr
    assert "Audio: aac" in streams and "stereo" in streams


def test_a_soundtrack_that_is_not_audio_is_bad_input(episode):
    result = _podcast(episode, "-o", episode["folder"] / "bad.mp4", "--soundtrack", episode["cast"])
    assert result.returncode == 2 and "no audio stream" in result.stderr and "Traceback" not in result.stderr


def test_a_missing_soundtrack_file_is_bad_input(episode):
    result = _podcast(episode, "-o", episode["folder"] / "bad.mp4", "--soundtrack", "master-final.wav")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "soundtrack" in result.stderr and "master-final.wav: no such file" in result.stderr
    assert "recorded or gated" in result.stderr


def test_the_recorded_example_renders_with_its_transcript(tmp_path):
    from conftest import ROOT

    example = ROOT / "scripts_examples" / "recorded" / "lighthouse-episode.yaml"
    target = tmp_path / "lighthouse.mp4"
    result = run_cli("podcast", "--cast", example, "-o", target, "--cache", tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    cues = json.loads((target.with_suffix("") / "cues.json").read_text())["cues"]
    assert [c["speaker"] for c in cues] == ["maya", "theo", "maya", "theo", "maya"]
    assert cues[2]["text"] == "Lonely how?" and "Lonely how?" in target.with_suffix(".srt").read_text()


def test_an_ass_transcript_is_read_with_its_speakers(tmp_path):
    from talkstudio.transcript import read_transcript

    ass = tmp_path / "episode.ass"
    ass.write_text("[Script Info]\nScriptType: v4.00+\n\n[Events]\n"
                   "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
                   "Dialogue: 0,0:00:01.15,0:00:02.30,Default,Ana,0,0,0,,Welcome {\\i1}back{\\i0}, everyone.\n"
                   "Dialogue: 0,0:00:03.50,0:00:05.30,Default,,0,0,0,,Ben: Thanks &amp; hello.\n", encoding="utf-8")
    entries = read_transcript(ass, {"ana": "Ana", "ben": "Ben"})
    assert [(e.speaker, e.text, e.start, e.line) for e in entries] == [
        ("ana", "Welcome back, everyone.", 1.15, 6), ("ben", "Thanks & hello.", 3.5, 7)]
