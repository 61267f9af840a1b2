"""The multicam edit: its rules hold for any timeline, its decisions round-trip through the EDL, and the cut
is the wide render with close-ups cropped from it."""

import json
import math
import random
import re
from pathlib import Path
from itertools import pairwise

import numpy as np
import pytest

from conftest import ROOT, run_cli
from talkstudio.assemble import count_frames, probe, read_frames
from talkstudio.errors import InputError
from talkstudio.multicam import (
    EditSettings,
    Programme,
    SceneFrames,
    Shot,
    Turn,
    close_up,
    close_up_frame,
    close_up_rect,
    decide_shots,
    edl_text,
    read_edl,
)

FPS = 25


def random_programme(seed: int) -> Programme:
    """Scenes with 1 to 3 of 4 characters on stage, lines of any length, pauses, overlaps, quick exchanges."""
    rng = random.Random(seed)
    scenes, turns, frame = [], [], 0
    for number in range(rng.randint(1, 3)):
        on_stage = rng.sample(["ana", "ben", "cy", "dee"], rng.randint(1, 3))
        start, clock = frame, frame + rng.randint(0, 15)
        for _ in range(rng.randint(1, 10)):
            speaker = rng.choice(on_stage)
            length = rng.choice([rng.randint(2, 30), rng.randint(30, 200)])
            previous = turns[-1] if turns and turns[-1].start >= start else None
            if previous and previous.speaker != speaker and rng.random() < 0.25:
                begin = max(previous.start, previous.end - rng.randint(1, 40))  # an overlap
            else:
                begin = clock + rng.choice([rng.randint(0, 10), rng.randint(10, 80)])
            turns.append(Turn(speaker, begin, begin + length))
            clock = max(clock, begin + length)
        frame = clock + rng.randint(0, 25)
        faces = {name: (10.0 + 60 * k, 20.0, 40.0, 48.0) for k, name in enumerate(on_stage)}
        scenes.append(SceneFrames(f"s{number}", start, frame, faces))
    return Programme(FPS, frame, turns, scenes)


def shot_at(shots, frame):
    return next(s for s in shots if s.start <= frame < s.end)


@pytest.mark.parametrize("min_shot", [0.5, 1.5, 3.0])
def test_rules_hold_for_random_timelines(min_shot):
    for seed in range(60):
        programme = random_programme(seed)
        settings = EditSettings(min_shot=min_shot, seed=seed, reactions=0.7)
        shots = decide_shots(programme, settings)
        min_frames = math.ceil(min_shot * FPS)
        assert shots[0].start == 0 and shots[-1].end == programme.frames
        for a, b in pairwise(shots):
            assert a.end == b.start and a.close != b.close, (seed, a, b)
        for shot in shots:
            # only a whole video shorter than the minimum is one shorter shot
            assert shot.end - shot.start >= min_frames or shots == [Shot(0, programme.frames)], (seed, shot)
        for frame in range(programme.frames):
            speaking = {t.speaker for t in programme.turns if t.start <= frame < t.end}
            shot = shot_at(shots, frame)
            scene = programme.scenes[programme.scene_at(frame)]
            if len(speaking) > 1:
                assert shot.close is None, (seed, frame, speaking, shot)
            elif speaking:
                assert shot.close in (None, *speaking), (seed, frame, speaking, shot)
            assert shot.close is None or shot.close in scene.faces
        assert decide_shots(programme, settings) == shots  # deterministic


def test_a_monologue_goes_close_after_the_establishing_wide_shot():
    programme = Programme(FPS, 400, [Turn("ana", 10, 380)], [SceneFrames("s", 0, 400, {"ana": (0, 0, 9, 9),
                                                                                        "ben": (20, 0, 9, 9)})])
    shots = decide_shots(programme, EditSettings(establish=2.0))
    assert shots == [Shot(0, 50), Shot(50, 400, "ana")]


def test_a_rapid_exchange_is_wide_and_long_lines_are_close():
    quick = [Turn("ana" if k % 2 else "ben", 300 + 30 * k, 325 + 30 * k) for k in range(8)]
    turns = [Turn("ana", 10, 290), *quick, Turn("ben", 560, 800)]
    programme = Programme(FPS, 820, turns, [SceneFrames("s", 0, 820, {"ana": (0, 0, 9, 9), "ben": (20, 0, 9, 9)})])
    shots = decide_shots(programme, EditSettings())
    assert all(shot_at(shots, f).close is None for f in range(330, 520))
    assert shot_at(shots, 200).close == "ana" and shot_at(shots, 700).close == "ben"


def test_reactions_only_in_silences_long_enough_and_by_the_seed():
    faces = {"ana": (0, 0, 9, 9), "ben": (20, 0, 9, 9), "cy": (40, 0, 9, 9)}
    turns = [Turn("ana", 10, 200), Turn("ana", 300, 500), Turn("ana", 600, 800)]
    programme = Programme(FPS, 820, turns, [SceneFrames("s", 0, 820, faces)])
    always = decide_shots(programme, EditSettings(reactions=1.0))
    listeners = [s for s in always if s.close in ("ben", "cy")]
    assert listeners and all(not any(t.start < s.end and t.end > s.start for t in turns) for s in listeners)
    assert not [s for s in decide_shots(programme, EditSettings(reactions=0.0)) if s.close in ("ben", "cy")]
    chosen = {tuple(s.close for s in decide_shots(programme, EditSettings(reactions=1.0, seed=seed)))
              for seed in range(8)}
    assert len(chosen) > 1  # the seed picks who reacts


def test_close_ups_stay_in_the_frame_with_its_shape_around_the_face():
    rng = np.random.default_rng(3)
    for _ in range(300):
        width, height = int(rng.integers(32, 960)) * 2, int(rng.integers(32, 540)) * 2
        w, h = rng.uniform(4, width / 2), rng.uniform(4, height / 1.2)
        face = (rng.uniform(0, width - w), rng.uniform(0, height - h), w, h)
        x, y, cw, ch = close_up_rect(face, (width, height))
        assert 0 <= x and 0 <= y and x + cw <= width and y + ch <= height
        assert abs(cw / ch / (width / height) - 1) <= 1 / min(cw, ch)  # the same shape, up to a pixel
        assert x <= face[0] + w / 2 <= x + cw or cw >= width - 1
        assert ch <= height


def test_a_close_up_covers_every_column_nearer_another_face():
    rng = np.random.default_rng(5)
    for _ in range(300):
        width, height = int(rng.integers(64, 960)) * 2, int(rng.integers(64, 540)) * 2
        edges = np.sort(rng.uniform(0, width, 2 * int(rng.integers(2, 5))))  # faces side by side
        faces = [(a, rng.uniform(0, height * 0.6), b - a, rng.uniform(4, height * 0.4))
                 for a, b in zip(edges[::2], edges[1::2])]
        for k, face in enumerate(faces):
            others = tuple(faces[:k] + faces[k + 1:])
            shot = close_up(face, (width, height), others)
            x, _, _, _ = shot.rect
            shown = (x + shot.own[0], x + shot.own[2])
            assert shown[0] <= face[0] + face[2] / 2 <= shown[1]
            assert all(shown[1] <= ox or ox + ow <= shown[0] for ox, _, ow, _ in others)


@pytest.mark.parametrize("people", [2, 3, 4])
def test_close_ups_of_a_composed_stage_show_one_whole_face_no_other_panel_and_no_seam(write_script, people):
    from talkstudio.checks import load_screenplay
    from talkstudio.multicam import stage_background
    from talkstudio.stage import build_stage

    cast = ", ".join(f"p{i}: {{voice: ava}}" for i in range(people))
    lines = ", ".join(f"{{p{i}: Hello.}}" for i in range(people))
    screenplay = load_screenplay(write_script(f"video: {{size: 640x360}}\ncast: {{{cast}}}\n"
                                              f"scenes:\n  - lines: [{lines}]\n"))
    stage = build_stage(screenplay, screenplay.scenes[0])
    faces = {name: face.box for name, face in stage.faces.items()}
    for name, box in faces.items():
        shot = close_up(box, stage.size, tuple(b for n, b in faces.items() if n != name), stage.regions[name])
        x, y, w, h = shot.rect
        assert y <= box[1] and box[1] + box[3] <= y + h  # the whole face, chin to forehead
        marked = np.full((stage.size[1], stage.size[0], 3), 90, np.uint8)  # the stage between the panels
        for other, (x0, y0, x1, y1) in stage.regions.items():
            marked[y0:y1, x0:x1] = (0, 255, 0) if other == name else (255, 0, 0)
        picture = close_up_frame(marked, shot, stage.size, stage_background(marked, stage.regions))
        assert picture.shape == marked.shape
        assert not ((picture[..., 0] > 120) & (picture[..., 1] < 120)).any()  # nothing of a neighbour's panel
        assert (picture[..., 1] == 255).mean() > 0.3  # the speaker's panel, sharp, fills much of it
        real = close_up_frame(stage.image, shot, stage.size, stage_background(stage.image, stage.regions))
        steps = np.abs(np.diff(real.astype(int), axis=1)).mean(axis=(0, 2))
        assert steps.max() < 12, steps.argmax()  # no hard vertical edge anywhere across the picture


def test_edl_round_trip_and_a_hand_edit(tmp_path):
    programme = random_programme(5)
    shots = decide_shots(programme, EditSettings())
    edl = tmp_path / "cut.edl.txt"
    edl.write_text(edl_text(shots, programme, tmp_path / "v.mp4"))
    assert read_edl(edl, programme) == shots
    lines = edl.read_text().splitlines()
    first = next(k for k, line in enumerate(lines) if line and not line.startswith("#"))
    start, end = lines[first].split()[:2]
    on_stage = min(programme.scenes[0].faces)
    lines[first] = f"{start}  {end}  close {on_stage}   # my choice"
    edl.write_text("\n".join(lines) + "\n")
    assert read_edl(edl, programme)[0] == Shot(shots[0].start, shots[0].end, on_stage)


@pytest.mark.parametrize("row, message", [
    ("00:00:00.000  00:00:01.000  wide\n00:00:01.200  00:00:04.000  wide", "leaves a gap"),
    ("00:00:00.000  00:00:02.000  wide\n00:00:01.000  00:00:04.000  wide", "overlaps"),
    ("00:00:00.000  00:00:03.000  wide", "the last shot ends at"),
    ("00:00:00.000  00:00:04.000  crane", "cannot read the shot"),
    ("00:00:00.000  00:00:04.000  close zed", "no close-up of 'zed'"),
    ("00:00:00.000  0x:04  wide", "'0x:04' is not a time"),
    ("00:00:03.000  00:00:01.000  wide", "ends (00:00:01.000) before it starts"),
])
def test_bad_edls_name_the_line(tmp_path, row, message):
    programme = Programme(FPS, 100, [Turn("ana", 0, 50)], [SceneFrames("s", 0, 100, {"ana": (0, 0, 9, 9)})])
    edl = tmp_path / "bad.txt"
    edl.write_text("# my edit\n" + row + "\n")
    with pytest.raises(InputError) as caught:
        read_edl(edl, programme)
    assert message in str(caught.value) and f"{edl}:" in str(caught.value)


SCRIPT = f"""
title: Two hosts
video: {{size: 192x112}}
cast:
  maya: {{image: {ROOT / 'casts' / 'maya.png'}, voice: ava}}
  theo: {{image: {ROOT / 'casts' / 'theo.png'}, voice: dan}}
scenes:
  - lines:
      - maya: Good morning, and welcome to the show. Today we talk about the oldest trick in radio.
      - theo: Which is knowing when to stop talking, and I have been practising it all week long.
      - maya: Ha!
        overlap: 0.4
      - maya: Then let us see how long that lasts, because we have a whole hour to fill this morning.
"""


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    folder = tmp_path_factory.mktemp("multicam")
    script = folder / "hosts.yaml"
    script.write_text(SCRIPT)
    video = folder / "hosts.mp4"
    result = run_cli("render", script, "-o", video, "--cache", folder / "cache", "-q")
    assert result.returncode == 0, result.stderr[-2000:]
    return video


def frame_at(timecode: str, fps: float) -> int:
    hours, minutes, seconds = timecode.split(":")
    return round((int(hours) * 3600 + int(minutes) * 60 + float(seconds)) * fps)


def frames_of(video):
    return list(read_frames(video, (192, 112)))


def test_the_cut_has_every_frame_with_close_ups_cropped_from_the_wide_shot(wide):
    result = run_cli("edit", wide)
    assert result.returncode == 0, result.stderr
    cut, edl = wide.with_name("hosts.cut.mp4"), wide.with_name("hosts.edl.txt")
    cues = json.loads((wide.with_suffix("") / "cues.json").read_text())
    assert count_frames(cut) == cues["frames"]
    streams = probe(cut)["streams"]
    assert ("audio", "aac") in streams and ("subtitle", "mov_text") in streams
    for kind in ("srt", "vtt", "ass"):  # the render's subtitles beside the cut: its timeline is the render's
        assert cut.with_suffix(f".{kind}").read_text() == wide.with_suffix(f".{kind}").read_text()
    programme_shots = [line for line in edl.read_text().splitlines() if line and not line.startswith("#")]
    assert any(" close " in line for line in programme_shots) and any(" wide " in line for line in programme_shots)
    fps = cues["fps"]
    shots = [(frame_at(row.split()[0], fps), frame_at(row.split()[1], fps), row.split("#")[0].split()[2:])
             for row in programme_shots]
    original, edited = frames_of(wide), frames_of(cut)
    for start, end, camera in shots:
        middle = (start + end) // 2
        difference = np.abs(original[middle].astype(int) - edited[middle].astype(int)).mean()
        if camera == ["wide"]:
            assert difference < 3, (camera, difference)  # only the second encoding's loss
        else:
            assert difference > 10, (camera, difference)


def test_an_edited_edl_is_applied_and_protected(wide):
    assert run_cli("edit", wide).returncode == 0
    edl = wide.with_name("hosts.edl.txt")
    rows = edl.read_text().splitlines()
    index = next(k for k, line in enumerate(rows) if " close " in line)
    start, end = rows[index].split()[:2]
    rows[index] = f"{start}  {end}  wide"
    edl.write_text("\n".join(rows) + "\n")

    again = run_cli("edit", wide)  # deciding again would throw the hand edit away
    assert again.returncode == 2 and "--edl" in again.stderr and "Traceback" not in again.stderr

    mine = wide.with_name("mine.mp4")
    assert run_cli("edit", wide, "--edl", edl, "-o", mine).returncode == 0
    fps = json.loads((wide.with_suffix("") / "cues.json").read_text())["fps"]
    first, last = frame_at(start, fps), frame_at(end, fps)
    original, edited = frames_of(wide), frames_of(mine)
    middle = (first + last) // 2
    assert np.abs(original[middle].astype(int) - edited[middle].astype(int)).mean() < 3
    assert run_cli("edit", wide, "--overwrite").returncode == 0


def test_bad_edl_or_video_exits_2(wide, tmp_path):
    bad = tmp_path / "bad.edl.txt"
    bad.write_text("00:00:00.000  00:00:01.000  wide\n00:00:02.000  00:00:03.000  close nobody\n")
    result = run_cli("edit", wide, "--edl", bad, "-o", tmp_path / "x.mp4")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{bad}:2" in result.stderr and "no close-up of 'nobody'" in result.stderr
    assert "the last shot ends at 00:00:03.000" in result.stderr  # the bad line's times still count
    assert not (tmp_path / "x.mp4").exists()
    result = run_cli("edit", tmp_path / "nothing.mp4")
    assert result.returncode == 2 and "render it first" in result.stderr


def test_a_vertical_cut_follows_the_speaker_with_captions_in_the_safe_area(wide):
    from talkstudio.multicam import load_programme

    vertical = wide.with_name("vertical.mp4")
    result = run_cli("edit", wide, "--aspect", "9:16", "--overwrite", "-o", vertical)
    assert result.returncode == 0, result.stderr
    programme = load_programme(wide)
    assert count_frames(vertical) == programme.frames
    assert re.search(r"Video: h264.*, 64x112", probe(vertical)["report"])  # 112 * 9 / 16, even
    original, cut = frames_of(wide), list(read_frames(vertical, (64, 112)))
    edl = [row for row in wide.with_name("hosts.edl.txt").read_text().splitlines() if row and row[0] != "#"]
    start, end = (frame_at(t, programme.fps) for t in edl[0].split()[:2])
    assert edl[0].split()[2] == "wide"  # the establishing shot: wide, and maya speaks
    middle = (start + end) // 2
    below = cut[middle][40:].astype(int)  # under the captions
    offsets = [np.abs(original[middle][40:, left:left + 64].astype(int) - below).mean() for left in range(192 - 64 + 1)]
    left = int(np.argmin(offsets))
    x, _, w, _ = programme.scenes[0].faces["maya"]
    assert offsets[left] < 4 and abs(left + 32 - (x + w / 2)) <= 4  # the crop is centred on her face
    # the captions: drawn near the top, under the apps' tabs and above the faces
    band = np.abs(original[middle][:, left:left + 64].astype(int) - cut[middle].astype(int))
    assert band[10:36].mean() > 3 * max(band[50:].mean(), 0.5)
    assert band[:8].mean() < band[10:36].mean()
    assert "PlayResX: 64" in vertical.with_suffix(".ass").read_text()  # the captions as laid out for 9:16
    assert vertical.with_suffix(".srt").read_text() == wide.with_suffix(".srt").read_text()


@pytest.mark.parametrize("wrong, rows", [
    (3, ["0 1 wide", "1 2 wide", "2 3 close zed", "3 4 wide"]),  # a wrong camera: its neighbours are fine
    (3, ["0 1 wide", "1 2 wide", "2 3 crane", "3 4 wide"]),
    (2, ["0 1 wide", "1 2 close", "2 4 wide"]),
])
def test_each_problem_is_on_the_line_that_is_wrong(tmp_path, wrong, rows):
    programme = Programme(FPS, 100, [Turn("ana", 0, 50)], [SceneFrames("s", 0, 100, {"ana": (0, 0, 9, 9)})])
    edl = tmp_path / "bad.txt"
    edl.write_text("# my edit\n\n" + "\n".join(rows) + "\n")  # shots from line 3 of the file
    with pytest.raises(InputError) as caught:
        read_edl(edl, programme)
    assert [problem.line for problem in caught.value.problems] == [wrong + 2]


def test_the_cut_is_written_as_a_timeline_editors_import_and_read_back(wide, tmp_path):
    import xml.etree.ElementTree as ElementTree

    import opentimelineio as otio

    from talkstudio.multicam import load_programme, read_edl

    cut = tmp_path / "hosts.cut.mp4"
    result = run_cli("edit", wide, "-o", cut, "--overwrite")
    assert result.returncode == 0, result.stderr
    programme = load_programme(wide)
    decided = read_edl(wide.with_name("hosts.edl.txt"), programme)
    timeline = otio.adapters.read_from_file(str(cut.with_suffix(".otio")))
    clips = list(timeline.video_tracks()[0].find_clips())
    assert [(round(c.range_in_parent().start_time.value), round(c.range_in_parent().end_time_exclusive().value))
            for c in clips] == [(s.start, s.end) for s in decided]
    for clip, shot in zip(clips, decided):
        source = Path(clip.media_reference.target_url.removeprefix("file://"))
        assert source.is_file() and count_frames(source) == programme.frames  # each camera covers the video
        assert (shot.close is None) == (source == wide.resolve())
    edl = otio.adapters.read_from_file(str(cut.with_suffix(".edl")), adapter_name="cmx_3600", rate=programme.fps)
    assert len(list(edl.video_tracks()[0].find_clips())) == len(decided)
    assert len(ElementTree.parse(cut.with_suffix(".xml")).getroot().findall(".//clipitem")) == len(decided) + 1
    # the timeline, applied as it is, gives the same cut
    again = tmp_path / "again.mp4"
    assert run_cli("edit", wide, "--edl", cut.with_suffix(".otio"), "-o", again).returncode == 0
    assert read_edl(cut.with_suffix(".otio"), programme) == decided
    assert count_frames(again) == programme.frames
