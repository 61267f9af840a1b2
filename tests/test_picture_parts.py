"""The picture's parts alone: chunk plan, stitching, subtitles, stages, faces, the puppet."""

import numpy as np
import pytest

from talkstudio.errors import InputError
from talkstudio.plan import ChunkSpan, plan_scene
from talkstudio.stitch import colour_match, crossfade, stitch


@pytest.mark.parametrize("frames, frame_num, motion", [(1, 81, 0), (81, 81, 0), (82, 81, 0), (500, 81, 0),
                                                       (500, 81, 25), (81, 81, 5), (90, 9, 1), (7, 5, 1)])
def test_plan_covers_every_frame_once(frames, frame_num, motion):
    spans = plan_scene("s", frames, frame_num, motion)
    covered = [f for span in spans for f in span.new_frames]
    assert covered == list(range(frames))
    assert all(s.frame_num == frame_num for s in spans)
    for a, b in zip(spans, spans[1:]):
        assert b.start == a.start + frame_num - motion and b.keep_from == motion
    assert spans[-1].start + spans[-1].frame_num >= frames  # the last window is padded, then trimmed


@pytest.mark.parametrize("frame_num, motion", [(80, 0), (3, 0), (9, 9)])
def test_plan_rejects_bad_chunk_lengths(frame_num, motion):
    with pytest.raises(InputError):
        plan_scene("s", 100, frame_num, motion)


def test_stitch_drop_and_crossfade():
    window = np.arange(9, dtype=np.uint8).reshape(9, 1, 1, 1).repeat(3, axis=3) * 10
    first = ChunkSpan("s", 0, 0, 9, 0, 9)
    second = ChunkSpan("s", 1, 6, 9, 3, 7)
    assert len(stitch(window, first, "drop", 3, last=False)) == 9
    assert list(stitch(window, second, "drop", 3, last=True)[:, 0, 0, 0]) == [30, 40, 50, 60]
    held = stitch(window, first, "crossfade", 3, last=False)
    assert len(held) == 6  # the last 3 are held back for the next chunk to fade into
    tail = window[6:]
    faded = stitch(window, second, "crossfade", 3, last=True, previous_tail=tail)
    assert len(faded) == 7 and list(faded[3:, 0, 0, 0]) == [30, 40, 50, 60]
    mix = crossfade(np.zeros((3, 1, 1, 3), np.uint8), np.full((3, 1, 1, 3), 200, np.uint8))[:, 0, 0, 0]
    assert list(mix) == [50, 100, 150]


def test_colour_match_moves_statistics_to_the_reference():
    rng = np.random.default_rng(0)
    reference = rng.integers(80, 160, (32, 32, 3)).astype(np.uint8)
    drifted = np.clip(reference.astype(int) + [30, -20, 10], 0, 255).astype(np.uint8)[None].repeat(4, 0)
    matched = colour_match(drifted, reference)
    assert np.abs(matched.mean(axis=(0, 1, 2)) - reference.mean(axis=(0, 1))).max() < 1.0


def _cue(text, start, end, speaker="ana", words=None):
    return {"text": text, "start": start, "end": end, "speaker": speaker, "words": words or []}


def test_backend_options_are_checked_against_their_bounds_when_parsed():
    from talkstudio.generators import GENERATORS

    anytalker, multitalk = GENERATORS["anytalker"], GENERATORS["multitalk"]
    assert anytalker.parse_options({"steps": "8", "guide": 1.0, "shift": "0.5"}) == {"steps": 8, "guide": 1.0,
                                                                                   "shift": 0.5}
    for options, message in (({"steps": 0}, "steps must be 1 or more, not 0"),
                             ({"guide": "0.5"}, "guide must be 1.0 or more, not '0.5'"),
                             ({"shift": 0}, "shift must be more than 0, not 0")):
        with pytest.raises(ValueError, match=message):
            anytalker.parse_options(options)
    with pytest.raises(ValueError, match="resolution must be a multiple of 16, not 500"):
        multitalk.parse_options({"resolution": 500})
    with pytest.raises(ValueError, match="steps must be 1 or more, not 0; audio_guide must be 1.0 or more"):
        multitalk.parse_options({"steps": 0, "audio_guide": 0.5})  # every bad option at once
    assert multitalk.parse_options({"resolution": "auto", "shift": None}) == {"resolution": None, "shift": None}
    assert [o.allowed for o in multitalk.options if o.name == "resolution"] == [">= 64, a multiple of 16"]


def test_a_missing_lora_file_is_bad_input_before_any_model_loads(tmp_path):
    from talkstudio.errors import InputError
    from talkstudio.generators.multitalk import create

    with pytest.raises(InputError) as raised:
        create(models=tmp_path / "no-models-here", lora=str(tmp_path / "distill.safetensors"))
    assert "distill.safetensors: no such file" in raised.value.problems[0].render()
