"""A tiny AnyTalker window end to end on the CPU: real DiT, VAE (diffusers), wav2vec, masks and sampler.

The text and CLIP encoders are small stand-ins built here, so these tests look at the window
pipeline alone; tests/test_anytalker_e2e.py loads every network from official-format files.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from tests_anytalker_inputs import CONFIG, seeded_model  # noqa: E402


class TextStandIn(torch.nn.Module):
    """Bytes of the prompt embedded: different prompts give different, deterministic tokens."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.embed = torch.nn.Embedding(256, CONFIG["text_dim"])

    def forward(self, prompts):
        rows = [torch.tensor(list(p.encode()[:6].ljust(6, b" "))) for p in prompts]
        return self.embed(torch.stack(rows))


class ImageStandIn(torch.nn.Module):
    """257 tokens of 1280 from a picture's colour statistics."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(6)
        self.proj = torch.nn.Linear(6, 257 * 1280 // 64)

    def forward(self, picture):
        stats = torch.cat([picture.mean(dim=(2, 3)), picture.std(dim=(2, 3))], dim=1)
        return self.proj(stats).view(-1, 257, 1280 // 64).repeat_interleave(64, dim=2)


def wide_wav2vec():
    """wav2vec2-base's output shape (12 layers of 768) with narrow insides, so the real audio projection fits."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    config = Wav2Vec2Config(hidden_size=768, num_hidden_layers=12, num_attention_heads=2, intermediate_size=16,
                            conv_dim=(8,) * 7, num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=16)
    torch.manual_seed(8)
    return Wav2Vec2Model(config).eval()


@pytest.fixture(scope="module")
def components():
    from diffusers import AutoencoderKLWan

    from talkstudio.generators.wan_pipeline import Components

    torch.manual_seed(7)
    vae = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True]).eval()
    return Components(seeded_model(), vae, wide_wav2vec(), TextStandIn(), ImageStandIn())


def _window(components, frames=9, carried=None):
    from talkstudio.generators.anytalker.audio import frame_features
    from talkstudio.generators.anytalker.pipeline import Window

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)
    samples = int(frames / 24 * 16000)
    t = np.arange(samples) / 16000
    voices = [(0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), np.zeros(samples, np.float32)]
    audio = [frame_features(components.wav2vec, voice, frames) for voice in voices]
    return Window(image, [(4, 4, 16, 20), (28, 4, 16, 20)], audio, frames, "two people talk", carried)


def test_a_window_renders_deterministically(components):
    from talkstudio.generators.anytalker.pipeline import generate

    frames = generate(components, _window(components), steps=3, seed=1)
    assert frames.shape == (9, 32, 48, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, generate(components, _window(components), steps=3, seed=1))
    assert not np.array_equal(frames, generate(components, _window(components), steps=3, seed=2))


def test_a_continued_window_starts_from_the_carried_frames(components):
    from talkstudio.generators.anytalker.pipeline import generate

    first = generate(components, _window(components), steps=3, seed=1)
    carried = first[-5:]
    second = generate(components, _window(components, carried=carried), steps=3, seed=3)
    assert second.shape == first.shape
    # the carried frames are re-imposed at every step: the new window's first frames stay near them
    start_error = np.abs(second[:5].astype(int) - carried.astype(int)).mean()
    free_window = generate(components, _window(components), steps=3, seed=3)
    assert start_error < np.abs(free_window[:5].astype(int) - carried.astype(int)).mean()


def test_two_chunks_with_two_identities_through_the_render_pipeline(components, write_script, tmp_path):
    """The chunk protocol end to end: a composed stage, two speakers, two chained windows, stitched."""
    from talkstudio.assemble import read_frames
    from talkstudio.cache import Cache
    from talkstudio.checks import load_screenplay
    from talkstudio.chunks import render_chunks
    from talkstudio.generators.anytalker import AnyTalkerGenerator
    from talkstudio.progress import Reporter
    from talkstudio.speech import speak_all, timeline_rate
    from talkstudio.stage import build_stage
    from talkstudio.timeline import build_timeline

    screenplay = load_screenplay(write_script(
        "video: {size: 96x64, backend: anytalker}\ntiming: {lead_in: 0.05, gap: 0.05, tail: 0.05}\n"
        "cast:\n  ana: {voice: ava}\n  ben: {voice: ben}\nscenes:\n  - lines: [{ana: Hi.}, {ben: Yo.}]\n"))
    rate = timeline_rate(screenplay)
    clips, _ = speak_all(screenplay, Cache(tmp_path / "cache"), rate, Reporter(quiet=True))
    timeline = build_timeline(screenplay, clips, rate)
    stages = [build_stage(screenplay, screenplay.scenes[0], Cache(tmp_path / "cache"))]
    generator = AnyTalkerGenerator(components, steps=2, max_area=48 * 32)
    partials, rendered = render_chunks(screenplay, timeline, stages, generator, Cache(tmp_path / "chunks"),
                                       Reporter(quiet=True), frame_num=9)
    frames = [f for p in partials for f in read_frames(p, (96, 64))]
    assert rendered == len(partials) >= 2
    assert len(frames) == timeline.frames
