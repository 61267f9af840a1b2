"""The chunk pipeline with a chained backend: carried frames, cross-fades, tails kept for resuming.

`Counter` stands in for a GPU backend at the generator protocol (no GPU here): each frame shows
its scene frame number, and a chained window must start from the frames it was given.
"""

import numpy as np
import pytest

from talkstudio.assemble import read_frames
from talkstudio.cache import Cache
from talkstudio.checks import load_screenplay
from talkstudio.chunks import render_chunks
from talkstudio.generators import ChunkRequest, GeneratorInfo
from talkstudio.progress import Reporter
from talkstudio.speech import speak_all, timeline_rate
from talkstudio.stage import Stage
from talkstudio.timeline import build_timeline


class Counter:
    def __init__(self, overlap: str):
        self.info = GeneratorInfo("counter", 25, "test", needs_gpu=False, frame_num=21, motion_frames=5,
                                  chained=True, overlap=overlap)
        self.carried: list = []

    def version(self) -> str:
        return "counter-1"

    def generate(self, request: ChunkRequest) -> np.ndarray:
        self.carried.append(None if request.carried is None else request.carried[:, 0, 0, 0].tolist())
        values = (request.start_frame + np.arange(request.frame_num)) * 2 % 250
        return np.broadcast_to(values[:, None, None, None], (request.frame_num, 64, 64, 3)).astype(np.uint8).copy()


@pytest.fixture
def scene(write_script, tmp_path):
    screenplay = load_screenplay(write_script(
        "video: {size: 64x64}\ncast:\n  ana: {voice: ava}\nscenes:\n  - lines:\n"
        "      - ana: A line long enough to need several chunks of twenty one frames.\n"))
    rate = timeline_rate(screenplay)
    clips, _ = speak_all(screenplay, Cache(tmp_path / "cache"), rate, Reporter(quiet=True))
    timeline = build_timeline(screenplay, clips, rate)
    stage = Stage(np.zeros((64, 64, 3), np.uint8), {}, "plain")
    return screenplay, timeline, [stage]


def _video_values(partials):
    return [int(f[0, 0, 0]) for p in partials for f in read_frames(p, (64, 64))]


@pytest.mark.parametrize("overlap", ["drop", "crossfade"])
def test_chained_chunks_carry_and_stitch(scene, tmp_path, overlap):
    screenplay, timeline, stages = scene
    generator = Counter(overlap)
    cache = Cache(tmp_path / "chunks")
    partials, rendered = render_chunks(screenplay, timeline, stages, generator, cache, Reporter(quiet=True))
    frames = timeline.frames
    assert rendered == len(partials) > 2
    # each window after the first was given the previous window's last 5 frames
    for k, carried in enumerate(generator.carried[1:], 1):
        start = k * 16
        assert carried == [(start + i) * 2 % 250 for i in range(5)]
    values = _video_values(partials)
    assert len(values) == frames
    expected = [(f * 2) % 250 for f in range(frames)]
    # H.264 at crf 20 moves flat grey levels by a step or two at most
    assert np.abs(np.array(values) - np.array(expected)).max() <= 3

    # a second run (a resume) renders nothing and hands back the same files
    again, rendered_again = render_chunks(screenplay, timeline, stages, Counter(overlap), cache, Reporter(quiet=True))
    assert rendered_again == 0 and again == partials


def test_resume_after_losing_a_middle_chunk_redoes_it_and_what_follows(scene, tmp_path):
    screenplay, timeline, stages = scene
    cache = Cache(tmp_path / "chunks")
    partials, _ = render_chunks(screenplay, timeline, stages, Counter("drop"), cache, Reporter(quiet=True))
    before = [p.read_bytes() for p in partials]
    partials[1].unlink()
    again, rendered = render_chunks(screenplay, timeline, stages, Counter("drop"), cache, Reporter(quiet=True))
    assert rendered == 1  # later chunks keep their keys: their inputs (the carried tail) are unchanged
    assert [p.read_bytes() for p in again] == before


def test_colour_match_applies_to_whole_chunk_backends(scene, tmp_path):
    screenplay, timeline, stages = scene
    screenplay.video.colour_match = True
    stages[0].image[:] = 200  # the stage is bright; the counter draws darker frames
    partials, _ = render_chunks(screenplay, timeline, stages, Counter("drop"), Cache(tmp_path / "c"),
                                Reporter(quiet=True))
    values = _video_values(partials[:1])
    assert abs(np.mean(values) - 200) < 3
