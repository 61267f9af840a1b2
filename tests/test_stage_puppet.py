"""Stages (composed and given, face binding) and the puppet generator."""

import numpy as np
import pytest

from conftest import ROOT
from talkstudio.checks import load_screenplay
from talkstudio.errors import InputError
from talkstudio.generators import ChunkRequest, get_generator
from talkstudio.stage import build_stage, panel_rects

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
CASTS = ROOT / "casts"


def _script(write_script, cast: dict, scene: str):
    lines = "\n".join(f"  {name}: {spec}" for name, spec in cast.items())
    speakers = list(cast)
    text = f"video: {{size: 832x480}}\ncast:\n{lines}\nscenes:\n  - id: s\n{scene}    lines:\n"
    text += "".join(f"      - {s}: Hello from {s}.\n" for s in speakers)
    return load_screenplay(write_script(text))


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_composed_stage_puts_each_face_in_its_panel(write_script, count):
    names = ["ada", "bo", "cy", "theo"][:count]
    screenplay = _script(write_script, {n: f"{{image: {CASTS / n}.png}}" for n in names}, "")
    stage = build_stage(screenplay, screenplay.scenes[0])
    assert stage.image.shape == (480, 832, 3) and list(stage.faces) == names
    for name, (x, y, w, h) in zip(names, panel_rects(count, 832, 480)):
        cx, cy = stage.faces[name].centre
        assert x < cx < x + w and y < cy < y + h
        assert stage.faces[name].source == "mesh"


def test_characters_without_images_get_drawn_portraits(write_script):
    screenplay = _script(write_script, {"zed": "{}", "yan": "{}"}, "")
    stage = build_stage(screenplay, screenplay.scenes[0])
    assert set(stage.faces) == {"zed", "yan"}
    again = build_stage(screenplay, screenplay.scenes[0])
    assert again.key == stage.key


def test_stage_photo_binds_faces_left_to_right(write_script):
    screenplay = _script(write_script, {"ada": "{}", "bo": "{}", "cy": "{}"},
                         f"    stage: {CASTS / 'lighthouse-keepers.png'}\n    cast: [cy, ada, bo]\n")
    stage = build_stage(screenplay, screenplay.scenes[0])
    xs = [stage.faces[n].centre[0] for n in ("cy", "ada", "bo")]
    assert xs == sorted(xs)  # the scene's cast order is left to right


def test_face_boxes_by_hand_take_precedence(write_script):
    # in the 1280x720 stage image the rightmost person's face is near x 1080
    screenplay = _script(write_script, {"ada": "{}", "cy": "{}"},
                         f"    stage: {CASTS / 'lighthouse-keepers.png'}\n    faces: {{ada: [980, 330, 200, 230]}}\n")
    stage = build_stage(screenplay, screenplay.scenes[0])
    assert stage.faces["ada"].centre[0] > 600 > stage.faces["cy"].centre[0]


def test_too_few_faces_is_a_clear_error(write_script):
    screenplay = _script(write_script, {n: "{}" for n in ("a", "b", "c", "d")},
                         f"    stage: {CASTS / 'lighthouse-keepers.png'}\n")
    with pytest.raises(InputError) as caught:
        build_stage(screenplay, screenplay.scenes[0])
    message = str(caught.value)
    assert "found 3 face(s)" in message and "faces: {d: [x, y, width, height]}" in message


def test_portrait_without_a_face_asks_for_a_box(write_script, tmp_path):
    from PIL import Image

    Image.new("RGB", (300, 300), (90, 140, 200)).save(tmp_path / "sky.png")
    screenplay = _script(write_script, {"ana": f"{{image: {tmp_path / 'sky.png'}}}"}, "")
    with pytest.raises(InputError) as caught:
        build_stage(screenplay, screenplay.scenes[0])
    assert "no face found" in str(caught.value) and "face: [x, y, width, height]" in str(caught.value)


def test_more_than_four_on_a_composed_stage(write_script):
    screenplay = _script(write_script, {n: "{}" for n in "abcde"}, "")
    with pytest.raises(InputError, match="1 to 4"):
        build_stage(screenplay, screenplay.scenes[0])


def _request(stage, voices, seed=0, start=0, frames=25):
    return ChunkRequest(stage, voices, 16000, {}, 25, start, frames, seed=seed, audio_key=f"test-{seed}-{id(voices)}")


def _talking(seconds=3.0, rate=16000):
    t = np.arange(int(seconds * rate)) / rate
    syllables = (np.sin(2 * np.pi * 3 * t) > 0).astype(np.float32)  # three syllables a second
    return (0.3 * np.sin(2 * np.pi * 180 * t) * syllables).astype(np.float32)


def test_puppet_is_deterministic_and_moves_only_the_speaker(write_script):
    screenplay = _script(write_script, {"ada": f"{{image: {CASTS / 'ada.png'}}}", "bo": f"{{image: {CASTS / 'bo.png'}}}"}, "")
    stage = build_stage(screenplay, screenplay.scenes[0])
    voices = {"ada": _talking(), "bo": np.zeros(48000, np.float32)}
    puppet = get_generator("puppet")
    frames = puppet.generate(_request(stage, voices))
    assert frames.shape == (25, 480, 832, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, puppet.generate(_request(stage, voices)))
    assert not np.array_equal(frames, puppet.generate(_request(stage, voices, seed=1)))

    def mouth_change(name):
        face = stage.faces[name]
        mx, my = map(int, face.mouth)
        r = int(face.mouth_width)
        region = frames[:, my - r // 2:my + r, mx - r:mx + r].astype(int)
        return np.abs(np.diff(region, axis=0)).mean()

    assert mouth_change("ada") > 4 * mouth_change("bo")


def test_puppet_chunks_join_without_a_seam(write_script):
    screenplay = _script(write_script, {"ada": f"{{image: {CASTS / 'ada.png'}}}"}, "")
    stage = build_stage(screenplay, screenplay.scenes[0])
    voices = {"ada": _talking()}
    puppet = get_generator("puppet")
    whole = puppet.generate(_request(stage, voices, frames=50))
    second = puppet.generate(_request(stage, voices, start=25, frames=25))
    assert np.array_equal(whole[25:], second)


def test_insightface_root_without_models_is_a_clear_error(write_script, tmp_path):
    (tmp_path / "face-models").mkdir()
    screenplay = _script(write_script, {"ada": "{}"}, "")
    screenplay.video.faces.insightface_root = tmp_path / "face-models"
    with pytest.raises(InputError) as caught:
        build_stage(screenplay, screenplay.scenes[0])
    message = str(caught.value)
    assert "no InsightFace detector" in message and "buffalo_l" in message and "mediapipe" in message


def test_insightface_root_must_exist(write_script):
    path = write_script("video: {faces: {insightface_root: nowhere}}\ncast:\n  ana: {}\nscenes:\n  - lines: [{ana: Hi}]\n")
    with pytest.raises(InputError, match="does not exist"):
        load_screenplay(path)
