"""`talkstudio render` end to end: the mp4, lip sync per character, resume after a kill, edits."""

import hashlib
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import EXAMPLES, ROOT, run_cli, start_cli
from talkstudio.assemble import count_frames, probe, read_frames
from talkstudio.cache import Cache
from talkstudio.progress import Reporter
from talkstudio.render import RenderOptions, render_video

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Every example rendered once through the command line, sharing one cache."""
    root = tmp_path_factory.mktemp("renders")
    results = {}
    for example in EXAMPLES:
        target = root / f"{example.stem}.mp4"
        result = run_cli("render", example, "-o", target, "--cache", root / "cache")
        assert result.returncode == 0, result.stderr[-2000:]
        results[example.stem] = (target, result)
    return results


@pytest.mark.parametrize("name", [p.stem for p in EXAMPLES])
def test_example_mp4_has_video_audio_subtitles_and_the_audio_duration(rendered, name):
    target, result = rendered[name]
    info = probe(target)
    assert ("video", "h264") in info["streams"] and ("audio", "aac") in info["streams"]
    assert ("subtitle", "mov_text") in info["streams"]
    cues = json.loads((target.with_suffix("") / "cues.json").read_text())
    assert abs(info["duration"] - cues["duration"]) <= 1 / cues["fps"] + 0.03
    assert count_frames(target) == cues["frames"]
    for suffix in (".srt", ".vtt", ".ass"):
        assert target.with_suffix(suffix).read_text().strip()
    assert "yuv420p" in info["report"] and "faststart" not in result.stderr


def _mouth_openings(video, size, faces, step=2):
    """Inner-lip opening over face height, per character, measured by the face mesh on the output frames."""
    from talkstudio.faces import LIP_BOTTOM, LIP_TOP, _get_models

    mesh = _get_models().mesh
    openings = {name: [] for name in faces}
    for index, frame in enumerate(read_frames(video, size)):
        if index % step:
            continue
        for name, face in faces.items():
            x, y, w, h = face["box"]
            x0, y0 = int(max(x - 0.5 * w, 0)), int(max(y - 0.5 * h, 0))
            crop = np.ascontiguousarray(frame[y0:int(y + 1.5 * h), x0:int(x + 1.5 * w)])
            found = mesh.process(crop).multi_face_landmarks
            if not found:
                openings[name].append(np.nan)
                continue
            points = found[0].landmark
            openings[name].append(abs(points[LIP_BOTTOM].y - points[LIP_TOP].y) * crop.shape[0] / h)
    return {name: np.array(v) for name, v in openings.items()}


def _speech_energy(track, rate, fps, frames, step=2):
    centres = ((np.arange(0, frames, step) + 0.5) / fps * rate).astype(int)
    half = int(0.04 * rate)
    return np.array([np.sqrt(np.mean(track[max(c - half, 0):c + half] ** 2)) for c in centres])


@pytest.mark.parametrize("name", ["podcast", "interruption"])
def test_each_mouth_follows_its_own_track(rendered, name):
    from scipy.io import wavfile

    target, _ = rendered[name]
    work = target.with_suffix("")
    cues = json.loads((work / "cues.json").read_text())
    stages = json.loads((work / "stages.json").read_text())
    scene = cues["scenes"][0]
    faces = stages[scene["id"]]
    openings = _mouth_openings(target, (832, 480), faces)
    frames = len(next(iter(openings.values()))) * 2
    energy = {}
    for speaker in faces:
        rate, track = wavfile.read(work / "tracks" / f"{speaker}.wav")
        energy[speaker] = _speech_energy(track, rate, cues["fps"], min(frames, scene["end_frame"]))
    for speaker, opening in openings.items():
        n = min(len(opening), len(energy[speaker]))
        valid = ~np.isnan(opening[:n])
        assert valid.mean() > 0.9, f"the mesh lost {speaker}'s face"

        def corr(a):
            return np.corrcoef(opening[:n][valid], a[:n][valid])[0, 1]

        own = corr(energy[speaker])
        others = [corr(energy[o]) for o in energy if o != speaker]
        assert own > 0.45, (speaker, own)
        assert own > max(others) + 0.3, (speaker, own, others)


def _frames_digest(video):
    digest = hashlib.sha256()
    result = subprocess.run([sys.executable, "-c", "import sys; from talkstudio.audio_io import ffmpeg_exe; print(ffmpeg_exe())"],
                            capture_output=True, text=True, check=True)
    raw = subprocess.run([result.stdout.strip(), "-v", "error", "-i", str(video), "-map", "0:v", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    digest.update(raw)
    return digest.hexdigest()


def test_a_killed_render_resumes_to_the_same_frames(tmp_path):
    example = ROOT / "scripts_examples" / "podcast.yaml"
    whole = tmp_path / "whole.mp4"
    assert run_cli("render", example, "-o", whole, "--cache", tmp_path / "c1", "-q").returncode == 0
    resumed = tmp_path / "resumed.mp4"
    chunks = tmp_path / "c2" / "chunks"
    rng = np.random.default_rng(7)
    for attempt in range(3):
        process = start_cli("render", example, "-o", resumed, "--cache", tmp_path / "c2", "-q",
                            stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        wanted = 1 + attempt * 3 + int(rng.integers(0, 2))
        while time.time() < deadline and process.poll() is None:
            if len(list(chunks.rglob("*.mp4"))) >= wanted:
                break
            time.sleep(0.02)
        time.sleep(float(rng.uniform(0, 0.3)))
        process.send_signal(signal.SIGKILL)
        process.wait()
    killed_leftovers = list((tmp_path / "c2").rglob("*.part"))
    assert run_cli("render", example, "-o", resumed, "--cache", tmp_path / "c2", "-q").returncode == 0
    # a kill leaves at most temporary .part files, never a finished-looking chunk that is cut short,
    # and the resumed render, completing those files, removes them
    assert not [p for p in killed_leftovers if p.exists()]
    # every finished chunk is byte for byte the one the uninterrupted render made
    for chunk in chunks.rglob("*.mp4"):
        twin = tmp_path / "c1" / chunk.relative_to(tmp_path / "c2")
        assert twin.read_bytes() == chunk.read_bytes()
    assert _frames_digest(resumed) == _frames_digest(whole)


THREE_SCENES = """
video: {size: 320x192}
cast:
  ana: {voice: ava}
  ben: {voice: ben}
scenes:
  - id: one
    lines: [{ana: The first scene has a line.}, {ben: And an answer to it.}]
  - id: two
    lines: [{ben: The second scene is here.}, {ana: Indeed it is.}]
  - id: three
    lines: [{ana: The last scene starts.}, {ben: LAST LINE}]
"""


def test_editing_the_last_scene_rerenders_only_its_chunks(write_script, tmp_path):
    script = write_script(THREE_SCENES.replace("LAST LINE", "And it ends."))
    cache = Cache(tmp_path / "cache")
    one_chunk_per_scene = RenderOptions(frame_num=201)
    first = render_video(script, tmp_path / "out.mp4", cache, Reporter(quiet=True), one_chunk_per_scene)
    assert first.chunks_cached == 0 and first.chunks == 3
    script.write_text(script.read_text().replace("And it ends.", "And it ends differently."))
    second = render_video(script, tmp_path / "out.mp4", cache, Reporter(quiet=True), one_chunk_per_scene)
    assert second.chunks == 3 and second.chunks_cached == 2
    assert second.audio.synthesized == 1
    again = render_video(script, tmp_path / "out.mp4", cache, Reporter(quiet=True), one_chunk_per_scene)
    assert again.up_to_date


def test_burned_subtitles_draw_text_into_the_picture(write_script, tmp_path):
    script = write_script("video: {size: 320x192}\ncast:\n  ana: {voice: ava}\nscenes:\n"
                          "  - lines: [{ana: Burned words should show up on screen.}]\n")
    cache = Cache(tmp_path / "cache")
    plain = render_video(script, tmp_path / "plain.mp4", cache, Reporter(quiet=True))
    burned = render_video(script, tmp_path / "burned.mp4", cache, Reporter(quiet=True), RenderOptions(burn_subtitles=True))
    assert ("subtitle", "mov_text") in probe(burned.target)["streams"]
    a = list(read_frames(plain.target, (320, 192)))[30]
    b = list(read_frames(burned.target, (320, 192)))[30]
    bottom = slice(120, 192)
    changed = np.abs(a[bottom].astype(int) - b[bottom].astype(int)).max(axis=2) > 60
    assert changed.sum() > 150, "no subtitle text in the lower part of the frame"
    top = np.abs(a[:60].astype(int) - b[:60].astype(int)).max()
    assert top < 40


def test_plan_command_prints_chunks(tmp_path):
    result = run_cli("plan", EXAMPLES[0], "--cache", tmp_path / "cache")
    assert result.returncode == 0 and "chunks" in result.stdout and "0+81" in result.stdout
    chained = run_cli("plan", EXAMPLES[0], "--backend", "multitalk", "--cache", tmp_path / "cache")
    assert "56+81" in chained.stdout and "25 carried" in chained.stdout


def test_multitalk_without_its_models_is_a_clear_error(tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if k != "TALKSTUDIO_MODELS"}
    podcast = next(p for p in EXAMPLES if p.stem == "podcast")  # two people: within what MultiTalk drives
    args = ("render", podcast, "-o", tmp_path / "x.mp4", "--backend", "multitalk", "--cache", tmp_path)
    result = run_cli(*args, env=env)
    assert result.returncode == 2 and "--models DIR" in result.stderr and "Traceback" not in result.stderr
    (tmp_path / "models").mkdir()
    result = run_cli(*args, "--models", tmp_path / "models", env=env)
    assert result.returncode == 2 and "chinese-wav2vec2-base" in result.stderr
    assert "hf download MeiGen-AI/MeiGen-MultiTalk" in result.stderr


def test_anytalker_without_its_models_is_a_clear_error(tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if k != "TALKSTUDIO_MODELS"}
    args = ("render", EXAMPLES[0], "-o", tmp_path / "x.mp4", "--backend", "anytalker", "--cache", tmp_path)
    result = run_cli(*args, env=env)
    assert result.returncode == 2 and "--models DIR" in result.stderr and "Traceback" not in result.stderr
    (tmp_path / "models").mkdir()
    result = run_cli(*args, "--models", tmp_path / "models", env=env)
    assert result.returncode == 2 and "Wan2.1_VAE.pth" in result.stderr and "hf download" in result.stderr


def test_an_edit_rerenders_only_the_chunks_near_it(write_script, tmp_path):
    lines = "".join(f"      - {'ana' if i % 2 else 'ben'}: This is line number {i} of a longer last scene.\n"
                    for i in range(8))
    script = write_script("video: {size: 320x192}\ncast:\n  ana: {voice: ava}\n  ben: {voice: ben}\nscenes:\n"
                          "  - id: only\n    lines:\n" + lines)
    cache = Cache(tmp_path / "cache")
    first = render_video(script, tmp_path / "out.mp4", cache, Reporter(quiet=True))
    assert first.chunks >= 5
    script.write_text(script.read_text().replace("line number 7 of", "line number 7, the very final one, of"))
    second = render_video(script, tmp_path / "out.mp4", cache, Reporter(quiet=True))
    redone = second.chunks - second.chunks_cached
    # the last line spans two chunks, and the 2 s of audio context reaches one more
    assert 1 <= redone <= 3 and redone < second.chunks / 2, f"{redone} of {second.chunks} chunks re-rendered"


def test_lip_sync_on_a_photograph_with_two_people(write_script, tmp_path):
    """A real photograph (public domain) twice, mirrored: two people on one stage image."""
    from PIL import Image
    from scipy.io import wavfile

    photo = np.asarray(Image.open(ROOT / "casts" / "astronaut.png").convert("RGB"))
    Image.fromarray(np.concatenate([photo, photo[:, ::-1]], axis=1)).save(tmp_path / "duet.png")
    script = write_script(
        "video: {size: 832x480}\ncast:\n  left: {voice: ava}\n  right: {voice: eve}\nscenes:\n"
        "  - id: duet\n    stage: duet.png\n    cast: [left, right]\n    lines:\n"
        "      - left: We trained for this for years, every single day.\n"
        "      - right: And now it is finally happening, right in front of us.\n"
        "      - left: Ready when you are.\n")
    result = render_video(script, tmp_path / "duet.mp4", Cache(tmp_path / "cache"), Reporter(quiet=True))
    work = result.work_dir
    faces = json.loads((work / "stages.json").read_text())["duet"]
    assert faces["left"]["box"][0] < faces["right"]["box"][0] and faces["left"]["source"] == "mesh"
    cues = result.audio.cues
    openings = _mouth_openings(result.target, (832, 480), faces)
    frames = len(next(iter(openings.values()))) * 2
    energy = {}
    for speaker in faces:
        rate, track = wavfile.read(work / "tracks" / f"{speaker}.wav")
        energy[speaker] = _speech_energy(track, rate, cues["fps"], frames)
    for speaker, opening in openings.items():
        n = min(len(opening), len(energy[speaker]))
        valid = ~np.isnan(opening[:n])
        assert valid.mean() > 0.9
        own = np.corrcoef(opening[:n][valid], energy[speaker][:n][valid])[0, 1]
        other = [np.corrcoef(opening[:n][valid], energy[o][:n][valid])[0, 1] for o in energy if o != speaker][0]
        assert own > 0.45 and own > other + 0.3, (speaker, own, other)
