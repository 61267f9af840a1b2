"""`talkstudio render --backend anytalker --models DIR` end to end on the CPU, from a tiny model folder whose
every file is in the official format (tests/anytalker_layout.py): T5, tokenizer, CLIP, VAE, wav2vec and
the DiT all go through their real loaders, then two chained chunks with two identities are rendered,
stitched and assembled."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from anytalker_layout import build_tiny_layout, tiny_configs  # noqa: E402

SCRIPT = """\
video: {size: 96x64, backend: anytalker, options: {steps: 2, max_area: 1536}}
timing: {lead_in: 0.05, gap: 0.05, tail: 0.05}
cast:
  ana: {voice: ava}
  ben: {voice: ben}
scenes:
  - prompt: two people talk in a warm room
    lines: [{ana: Hello there.}, {ben: Hi.}]
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return build_tiny_layout(tmp_path_factory.mktemp("models"))


@pytest.fixture
def tiny(monkeypatch):
    from talkstudio import generators

    tiny_configs(monkeypatch)
    monkeypatch.setattr(generators, "_instances", {})  # a backend loaded under other configurations is not reused


def _render(script, models, out, *extra):
    from cli import main

    return main(["render", str(script), "--models", str(models), "--frame-num", "9", "-o", str(out),
                 "--cache", str(out.parent / "cache"), "--quiet", *extra])


def test_two_chained_chunks_render_from_the_official_files(tiny, models, write_script, tmp_path):
    import json

    from talkstudio.assemble import count_frames, read_frames

    out = tmp_path / "out.mp4"
    assert _render(write_script(SCRIPT), models, out) == 0
    cues = json.loads((tmp_path / "out" / "cues.json").read_text())
    assert count_frames(out) == cues["frames"] > 9  # more than one chunk, all stitched
    frames = np.stack(list(read_frames(out, (96, 64))))
    assert frames.std() > 1.0  # a picture, not a flat frame

    again = tmp_path / "again.mp4"
    assert _render(write_script(SCRIPT), models, again, "--no-cache") == 0
    assert np.array_equal(np.stack(list(read_frames(again, (96, 64)))), frames)  # same seed, same video


def test_options_reach_the_backend_and_change_its_cache_identity(tiny, models):
    from talkstudio.generators import get_generator

    generator = get_generator("anytalker", models=models, steps=3, guide=2.0, vae_tiles=True, offload=True)
    assert (generator.steps, generator.guide) == (3, 2.0)
    assert generator.components.vae.use_tiling and generator.components.offload
    assert generator.version() != get_generator("anytalker", models=models, steps=3, guide=2.0).version()


def test_bad_options_are_input_errors(tiny, models, write_script, tmp_path, capsys):
    script = write_script(SCRIPT.replace("steps: 2", "stepz: 2"))
    assert _render(script, models, tmp_path / "x.mp4") == 2
    assert "did you mean 'steps'" in capsys.readouterr().err
    script = write_script(SCRIPT)
    assert _render(script, models, tmp_path / "y.mp4", "--opt", "guide=0.5") == 2
    assert "guide must be 1.0 or more" in capsys.readouterr().err
    assert _render(script, models, tmp_path / "z.mp4", "--opt", "steps=many") == 2
    assert "steps takes an int" in capsys.readouterr().err


def test_audio_features_do_not_depend_on_where_the_chunks_fall(tiny, models, write_script, tmp_path, monkeypatch):
    """Every window's wav2vec features are its frames of the whole scene track's features: rendered in
    9-frame or 13-frame chunks, the same frames get the same numbers, equal to one pass over the track."""
    from talkstudio.generators.anytalker import pipeline
    from talkstudio.generators.anytalker.audio import layer_features, frame_windows

    seen: dict[int, list] = {}
    real_generate = pipeline.generate

    def recording(components, window, *args, **kwargs):
        recording.components = components
        seen.setdefault(recording.frame_num, []).append(window.audio)
        return real_generate(components, window, *args, **kwargs)

    monkeypatch.setattr(pipeline, "generate", recording)
    starts: dict[int, list] = {}
    from talkstudio.generators import anytalker

    real_window = anytalker.TrackFeatures.window

    def window(self, wav2vec, request, name):
        starts.setdefault(request.frame_num, []).append(request.start_frame)
        recording.track = (request.track, request.track_frames, request.rate, request.fps)
        return real_window(self, wav2vec, request, name)

    monkeypatch.setattr(anytalker.TrackFeatures, "window", window)
    script = write_script(SCRIPT)
    for frame_num in (9, 13):
        recording.frame_num = frame_num
        from cli import main

        assert main(["render", str(script), "--models", str(models), "--frame-num", str(frame_num), "-o",
                     str(tmp_path / f"out{frame_num}.mp4"), "--cache", str(tmp_path / "cache"), "--quiet"]) == 0

    def by_frame(frame_num):
        frames = {}
        for start, audio in zip(starts[frame_num][::2], seen[frame_num]):  # two identities: one start each
            for k in range(audio[0].shape[0]):
                frames.setdefault(start + k, [a[k] for a in audio])
        return frames

    nine, thirteen = by_frame(9), by_frame(13)
    common = sorted(set(nine) & set(thirteen))
    assert len(common) > 9
    for frame in common:
        for a, b in zip(nine[frame], thirteen[frame]):
            assert torch.equal(a, b), frame

    from talkstudio.audio_io import resample

    track, track_frames, rate, fps = recording.track
    wav2vec = recording.components.wav2vec
    whole = frame_windows(layer_features(wav2vec, resample(track["ana"], rate, 16000), track_frames), 0, track_frames)
    for frame in common:
        if frame < track_frames:
            torch.testing.assert_close(nine[frame][0], whole[frame].to(nine[frame][0].dtype), atol=1e-4, rtol=0)
