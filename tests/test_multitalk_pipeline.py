"""MultiTalk and InfiniteTalk end to end on the CPU, from a tiny model folder whose every file is in the
official format (tests/multitalk_layout.py): loading, the window pipeline (guidance passes, carried
frames), LoRA merging, and `talkstudio render --backend multitalk / infinitetalk` over chained chunks."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from anytalker_layout import tiny_configs  # noqa: E402
from multitalk_layout import build_tiny_multitalk  # noqa: E402
from tests_multitalk_inputs import seeded_model  # noqa: E402

SCRIPT = """\
video: {size: 96x64, backend: BACKEND, options: {steps: 2, resolution: 64}}
timing: {lead_in: 0.05, gap: 0.05, tail: 0.05}
cast:
  ana: {voice: ava}
  ben: {voice: ben}
scenes:
  - prompt: two people talk in a warm room
    lines: [{ana: "Hello there, how are you?"}, {ben: Fine thanks.}]
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return build_tiny_multitalk(tmp_path_factory.mktemp("models"))


@pytest.fixture
def tiny(monkeypatch):
    from talkstudio import generators

    tiny_configs(monkeypatch)
    monkeypatch.setattr(generators, "_instances", {})


def test_the_official_folders_load_strictly(tiny, models):
    from talkstudio.generators.multitalk.models import load_transformer, locate
    from tests_multitalk_inputs import inputs

    files = locate(models, "multitalk")
    assert files.people == 2 and len(files.dit_shards) == 2
    model = load_transformer(files)
    with torch.no_grad():
        torch.testing.assert_close(model(*inputs(2)), seeded_model()(*inputs(2)), atol=1e-6, rtol=0)


def test_missing_folders_are_listed_with_their_downloads(tmp_path):
    from talkstudio.errors import InputError
    from talkstudio.generators.multitalk.models import locate

    with pytest.raises(InputError) as caught:
        locate(tmp_path, "infinitetalk")
    message = str(caught.value)
    assert "Wan2.1_VAE.pth" in message and "infinitetalk.safetensors" in message and "chinese-wav2vec2-base" in message
    assert "hf download MeiGen-AI/InfiniteTalk" in message and "hf download Wan-AI/Wan2.1-I2V-14B-480P" in message


def _window(components, pinned=False, carried=None, people=2, frames=9):
    from talkstudio.generators.anytalker.audio import frame_windows, layer_features
    from talkstudio.generators.multitalk import person_regions
    from talkstudio.generators.multitalk.pipeline import Window

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)
    t = np.arange(int(1.2 * 16000)) / 16000
    voices = [(0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), np.zeros(len(t), np.float32)][:people]
    regions = person_regions([(4, 4, 12, 14), (30, 4, 12, 14)], 48, 32) if people == 2 else None
    # the window's frames of a 30-frame track, 4 frames in
    audio = torch.stack([frame_windows(layer_features(components.wav2vec, voice, 30), 4, frames) for voice in voices])
    return Window(image, regions, audio, frames, prompt="two people talk", carried=carried, pinned=pinned)


@pytest.fixture(scope="module")
def components(models):
    import pytest as _pytest

    patch = _pytest.MonkeyPatch()
    tiny_configs(patch)
    from talkstudio.generators.multitalk.models import load_transformer, locate
    from talkstudio.generators.wan_pipeline import load_components

    loaded = load_components(locate(models, "multitalk"), load_transformer, "cpu")
    patch.undo()
    return loaded


@pytest.mark.parametrize("text_guide", [5.0, 1.0], ids=["three-passes", "two-passes"])
def test_a_window_renders_deterministically(components, text_guide):
    from talkstudio.generators.multitalk.pipeline import Guidance, generate

    guidance = Guidance(text=text_guide, audio=4.0)
    frames = generate(components, _window(components), steps=2, guidance=guidance, seed=1)
    assert frames.shape == (9, 32, 48, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, generate(components, _window(components), steps=2, guidance=guidance, seed=1))
    assert not np.array_equal(frames, generate(components, _window(components), steps=2, guidance=guidance, seed=2))


def test_guidance_passes_match_the_originals_formula(components, monkeypatch):
    """Three passes: uncond + s_t (cond - no_text) + s_a (no_text - uncond); no-text and uncond see the
    negative prompt, uncond and no-audio a single silent voice, as the original."""
    from talkstudio.generators.multitalk import pipeline

    calls = []
    model = components.transformer

    def recording(x, t, text, clip, audio, regions):
        calls.append((x.shape[0], audio.shape[1], float(audio.abs().sum()), regions is not None))
        return model.__class__.forward(model, x, t, text, clip, audio, regions)

    monkeypatch.setattr(model, "forward", recording)
    pipeline.generate(components, _window(components), steps=1, guidance=pipeline.Guidance(5.0, 4.0), seed=0)
    assert [(batch, people, regions) for batch, people, _, regions in calls] == [(2, 2, True), (1, 1, False)]
    assert calls[1][2] == 0.0  # the unconditional pass hears silence
    calls.clear()
    pipeline.generate(components, _window(components), steps=1, guidance=pipeline.Guidance(1.0, 4.0), seed=0)
    assert [(batch, people, regions) for batch, people, _, regions in calls] == [(1, 2, True), (1, 1, False)]


@pytest.mark.parametrize("pinned, known", [(True, 9), (False, 25)], ids=["infinitetalk", "multitalk"])
def test_the_carried_frames_end_as_the_windows_first_latents(components, monkeypatch, pinned, known):
    """InfiniteTalk pins the carried frames' own latents; MultiTalk re-noises its known latents to each
    step's level, which at the last step (t = 0) is the clean latent: either way the window starts there."""
    from talkstudio.generators.multitalk import pipeline
    from talkstudio.generators.wan_pipeline import encode_latents, to_tensor

    rng = np.random.default_rng(4)
    carried = rng.integers(0, 255, (known, 32, 48, 3), dtype=np.uint8)
    window = _window(components, pinned=pinned, carried=carried, frames=29)
    decoded = []
    real_decode = pipeline.decode_latents
    monkeypatch.setattr(pipeline, "decode_latents", lambda vae, latent: decoded.append(latent) or real_decode(vae, latent))
    pipeline.generate(components, window, steps=2, seed=3)
    if pinned:
        expected = encode_latents(components.vae, to_tensor(carried)[None])
    else:
        video = torch.zeros(3, 29, 32, 48)
        video[:, :known] = to_tensor(carried)
        expected = encode_latents(components.vae, video[None])[:, :, :(known - 1) // 4 + 1]
    count = expected.shape[2]
    torch.testing.assert_close(decoded[0][:, :, :count], expected)
    assert not torch.allclose(decoded[0][:, :, count:], expected[:, :, -1:].expand_as(decoded[0][:, :, count:]))


def test_a_lora_changes_exactly_its_weights(tmp_path):
    from safetensors.torch import save_file

    from talkstudio.generators.multitalk.lora import apply_lora

    model = seeded_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    down, up = torch.randn(4, 48), torch.randn(48, 4)
    save_file({"diffusion_model.blocks.0.self_attn.q.lora_down.weight": down,
               "diffusion_model.blocks.0.self_attn.q.lora_up.weight": up,
               "diffusion_model.blocks.1.ffn.0.diff_b": torch.ones(64)}, tmp_path / "lora.safetensors")
    assert apply_lora(model, tmp_path / "lora.safetensors", scale=0.5) == 2
    after = model.state_dict()
    torch.testing.assert_close(after["blocks.0.self_attn.q.weight"], before["blocks.0.self_attn.q.weight"] + 0.5 * up @ down)
    torch.testing.assert_close(after["blocks.1.ffn.0.bias"], before["blocks.1.ffn.0.bias"] + 0.5)
    changed = [k for k in after if not torch.equal(after[k], before[k])]
    assert sorted(changed) == ["blocks.0.self_attn.q.weight", "blocks.1.ffn.0.bias"]


def test_a_lora_for_another_model_is_refused(tmp_path):
    from safetensors.torch import save_file

    from talkstudio.errors import InputError
    from talkstudio.generators.multitalk.lora import apply_lora

    save_file({"diffusion_model.blocks.9.self_attn.q.diff": torch.ones(48, 48)}, tmp_path / "other.safetensors")
    with pytest.raises(InputError, match="does not fit this model: no parameter blocks.9.self_attn.q.weight"):
        apply_lora(seeded_model(), tmp_path / "other.safetensors")


def _render(script, models, out, frame_num):
    from cli import main

    return main(["render", str(script), "--models", str(models), "--frame-num", str(frame_num), "-o", str(out),
                 "--cache", str(out.parent / "cache"), "--quiet"])


@pytest.mark.parametrize("backend, frame_num", [("multitalk", 29), ("infinitetalk", 13)])
def test_chained_chunks_render_through_the_cli(tiny, models, write_script, tmp_path, backend, frame_num):
    from talkstudio.assemble import count_frames, read_frames

    out = tmp_path / "out.mp4"
    assert _render(write_script(SCRIPT.replace("BACKEND", backend)), models, out, frame_num) == 0
    cues = json.loads((tmp_path / "out" / "cues.json").read_text())
    assert count_frames(out) == cues["frames"] > frame_num  # more than one chunk, stitched
    assert np.stack(list(read_frames(out, (96, 64)))).std() > 1.0


def test_more_people_than_the_weights_drive_is_refused_before_loading(tiny, models, write_script, tmp_path, capsys):
    script = write_script(SCRIPT.replace("BACKEND", "multitalk").replace(
        "  ben: {voice: ben}\n", "  ben: {voice: ben}\n  cy: {voice: dan}\n").replace(
        "{ben: Fine thanks.}", "{ben: Fine thanks.}, {cy: Me too.}"))
    assert _render(script, tmp_path / "no-models-needed", tmp_path / "x.mp4", 29) == 2
    assert "multitalk drives at most 2 at once" in capsys.readouterr().err


@pytest.mark.parametrize("do_normalize", [True, False])
def test_wav2vec_follows_its_folders_preprocessor_config(models, tmp_path, do_normalize):
    """With do_normalize (the default) the waveform's level does not matter; without it, it does."""
    import shutil

    from talkstudio.generators.anytalker.audio import layer_features, load_wav2vec

    folder = tmp_path / "wav2vec"
    shutil.copytree(models / "chinese-wav2vec2-base", folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({"do_normalize": do_normalize,
                                                                 "sampling_rate": 16000}))
    model = load_wav2vec(folder)
    t = np.arange(16000) / 16000
    voice = (0.1 * np.sin(2 * np.pi * 180 * t)).astype(np.float32)
    same = torch.allclose(layer_features(model, voice, 25), layer_features(model, 4 * voice, 25), atol=1e-4)
    assert same is do_normalize
