"""Stage 5: every chunk of every scene as a partial movie file, rendered only when missing.

A chunk's file is stored in the cache under a key made of everything that
determines its frames: the backend and its version, the video settings, the
window, the stage (picture and face binding), the scene's voices and
phonemes for the characters on stage, the prompt, the seed, the encoder
settings, and for a chained backend the key of the chunk it continues.
Chained backends also keep the window's last frames (lossless) beside it,
so a resumed render carries exactly what an uninterrupted one would.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from talkstudio.assemble import VIDEO_CODEC_ARGS, EncoderPool, FrameSink
from talkstudio.cache import Cache, atomic_write, content_key
from talkstudio.generators import ChunkRequest, Generator, StreamingGenerator, audio_digest
from talkstudio.plan import ChunkSpan, scene_plans
from talkstudio.progress import Reporter
from talkstudio.stitch import colour_match, stitch
from talkstudio.timeline import FrameClock

CHUNK_FORMAT = 1


@dataclass
class PlannedChunk:
    """One chunk of the plan: where it lies, where what it hears begins, and its cache key (known before
    rendering). The voices themselves are cut again only for a chunk that is rendered: a plan of a
    long scene holds no audio."""

    scene: int  # index of the scene
    span: ChunkSpan
    key: str
    first: int  # scene frame where the voices it hears begin
    audio_key: str


@dataclass
class _Hearing:
    """What a scene's chunks hear: its on-stage voices' phonemes, and for whole-track backends the tracks."""

    names: list[str]
    phonemes: dict
    track: dict | None
    track_frames: int
    track_key: str


def plan_chunks(screenplay, timeline, stages, info, version: str, frame_num: int | None = None, seed: int = 0,
                scenes: set[int] | None = None) -> list[list[PlannedChunk]]:
    """Every scene's chunks with their cache keys (empty for scenes not asked for): what a render would
    find in the cache or make, without making anything."""
    return [planned for _, planned in _planned_scenes(screenplay, timeline, stages, info, version, frame_num, seed,
                                                      scenes)]


def _planned_scenes(screenplay, timeline, stages, info, version: str, frame_num: int | None, seed: int,
                    scenes: set[int] | None):
    """(what the scene's chunks hear, its planned chunks), scene by scene: one scene's audio at a time."""
    colour = info.colour_match if screenplay.video.colour_match is None else screenplay.video.colour_match
    for index, (scene, stage, spans) in enumerate(zip(screenplay.scenes, stages,
                                                      scene_plans(screenplay, timeline, info, frame_num))):
        if scenes is not None and index not in scenes:
            yield None, []
            continue
        hearing = _hearing(timeline, index, stage, info)
        base = {
            "format": CHUNK_FORMAT, "backend": info.name, "version": version,
            "size": list(screenplay.video.size), "fps": timeline.fps, "rate": timeline.rate,
            "stage": stage.key, "prompt": scene.prompt or "",
            "seed": seed, "encoder": VIDEO_CODEC_ARGS, "overlap": info.overlap, "colour_match": colour,
        }
        planned, previous_key = [], None
        for span in spans:
            window, window_phonemes, first = _chunk_voices(timeline, index, hearing, span, info)
            audio_key = audio_digest(window, window_phonemes)
            key = content_key({**base, "span": [span.start, span.frame_num, span.keep_from, span.keep_to],
                               "audio": audio_key, "audio_start": first, "last": span is spans[-1],
                               "continues": previous_key,
                               **({"track": hearing.track_key} if hearing.track_key else {})})
            planned.append(PlannedChunk(index, span, key, first, audio_key))
            previous_key = key
        yield hearing, planned


def _hearing(timeline, index: int, stage, info) -> _Hearing:
    names = list(stage.faces)
    phonemes = {name: p for name, p in timeline.scene_phonemes(index).items() if name in stage.faces}
    return _Hearing(names, phonemes, *_scene_track(timeline, index, names, info.whole_track))


def _chunk_voices(timeline, index: int, hearing: _Hearing, span: ChunkSpan, info):
    """The voices and phonemes a chunk hears (its window with the audio context around it), and where they begin."""
    first = max(span.start - round(info.audio_context_s * timeline.fps), 0)
    end = span.start + span.frame_num + round(info.audio_context_s * timeline.fps)
    window, window_phonemes = _window(timeline, index, hearing.names, hearing.phonemes, first, end)
    return window, window_phonemes, first


def chunk_cached(cache: Cache, chunk: PlannedChunk, chained: bool) -> bool:
    """The chunk's partial file (and, for chained backends, its carried frames) is in the cache, intact."""
    return bool(cache.lookup("chunks", chunk.key, ".mp4") and (not chained or cache.lookup("chunks", chunk.key, ".tail.npy")))


def render_chunks(screenplay, timeline, stages, generator: Generator, cache: Cache, reporter: Reporter,
                  frame_num: int | None = None, seed: int = 0,
                  scenes: set[int] | None = None) -> tuple[list[Path], int]:
    """The partial movie files in order, and how many had to be rendered; only those of the `scenes`
    (indices) when given."""
    info = generator.info
    total = sum(len(spans) for index, spans in enumerate(scene_plans(screenplay, timeline, info, frame_num))
                if scenes is None or index in scenes)
    encoder = EncoderPool(timeline.fps, screenplay.video.size)
    partials: list[Path] = []
    rendered = 0
    colour = info.colour_match if screenplay.video.colour_match is None else screenplay.video.colour_match
    scene_by_scene = _planned_scenes(screenplay, timeline, stages, info, generator.version(), frame_num, seed, scenes)
    with reporter.task("chunks", total) as advance:
        for scene, stage, (hearing, planned) in zip(screenplay.scenes, stages, scene_by_scene):
            previous_tail = None
            for chunk in planned:
                span, last = chunk.span, chunk is planned[-1]
                path = cache.path("chunks", chunk.key, ".mp4")
                tail_path = cache.path("chunks", chunk.key, ".tail.npy")
                if chunk_cached(cache, chunk, info.chained):
                    tail = np.load(tail_path) if info.chained else None
                else:
                    window, window_phonemes, _ = _chunk_voices(timeline, chunk.scene, hearing, span, info)
                    request = ChunkRequest(stage, window, timeline.rate, window_phonemes, timeline.fps,
                                           span.start, span.frame_num, chunk.first, scene.prompt or "", seed,
                                           previous_tail, chunk.audio_key, hearing.track, hearing.track_frames,
                                           hearing.track_key)
                    if not info.chained and isinstance(generator, StreamingGenerator):
                        encoder.finish(_stream(generator, request, span, path, timeline.fps, screenplay.video.size))
                        tail = None
                    else:
                        frames = _checked(generator.generate(request), span, stage)
                        if colour:
                            frames = colour_match(frames, stage.image)
                        tail = frames[span.frame_num - info.motion_frames:] if info.chained else None
                        if tail is not None:
                            _save_array(tail_path, tail)
                        encoder.encode(stitch(frames, span, info.overlap, info.motion_frames, last, previous_tail),
                                       path, sealed=True)
                    rendered += 1
                partials.append(path)
                previous_tail = tail
                advance()
        encoder.wait()
    return partials, rendered


def _stream(generator, request: ChunkRequest, span: ChunkSpan, path: Path, fps: float, size) -> FrameSink:
    """Frames straight from the generator into an encoder, keeping those inside the scene; the sink to close."""
    sink = FrameSink(path, fps, size, sealed=True)
    try:
        for index, frame in enumerate(generator.frames(request)):
            if span.keep_from <= index < span.keep_to:
                sink.write(frame)
    except BaseException:
        sink.abort()
        raise
    return sink


def _scene_track(timeline, index: int, names: list[str], wanted: bool) -> tuple[dict | None, int, str]:
    """Each on-stage voice over the whole scene, its frame count and digest; nothing unless `wanted`."""
    if not wanted:
        return None, 0, ""
    span = timeline.scenes[index]
    frames = span.end_frame - span.start_frame
    track, _ = _window(timeline, index, names, {}, 0, frames)
    return track, frames, audio_digest(track, {})


def _window(timeline, index: int, names: list[str], phonemes: dict, first: int, end: int):
    """The on-stage voices from scene frame `first` to `end` (zeros past the scene's end), and the
    phonemes in window time."""
    clock = FrameClock(timeline.rate, timeline.fps)
    span = timeline.scenes[index]
    lo, hi = clock.sample_of(span.start_frame + first), clock.sample_of(span.start_frame + end)
    # scenes are independent: nothing of the next scene leaks into this one's window
    inside = timeline.voices(names, lo, min(hi, span.end_sample))
    window = {name: np.pad(voice, (0, hi - lo - len(voice))) for name, voice in inside.items()}
    offset, length = first / timeline.fps, (end - first) / timeline.fps
    window_phonemes = {name: [(symbol, start - offset, stop - offset) for symbol, start, stop in found
                              if stop > offset and start < offset + length]
                       for name, found in phonemes.items()}
    return window, window_phonemes


def _checked(frames: np.ndarray, span: ChunkSpan, stage) -> np.ndarray:
    height, width = stage.image.shape[:2]
    if frames.shape != (span.frame_num, height, width, 3) or frames.dtype != np.uint8:
        raise RuntimeError(f"generator returned {frames.shape} {frames.dtype}, expected "
                           f"({span.frame_num}, {height}, {width}, 3) uint8")
    return frames


def _save_array(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    with atomic_write(path, sealed=True) as f:
        f.write(buffer.getvalue())
