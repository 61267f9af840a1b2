"""AnyTalker's DiT against the original implementation, at a tiny size on the CPU.

The fixture was made by loading this model's seeded random weights, strictly, into the original
`WanModel(model_type="a2v_af")` (HKUST-C4G/AnyTalker@e5490b6, wan/modules/model.py) and running its
forward in fp32 on the inputs of tests_anytalker_inputs.py (the script stays outside the project).
"""

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tests_anytalker_inputs import inputs, seeded_model  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


def test_state_dict_has_the_original_key_names_and_shapes():
    original = json.loads((FIXTURES / "anytalker_tiny_keys.json").read_text())
    ours = {k: list(v.shape) for k, v in seeded_model().state_dict().items()}
    assert ours == original
    assert "blocks.1.cross_attn.k_face.weight" in ours and "audio_ref_emb.proj.4.bias" in ours


def test_strict_loading_rejects_a_foreign_key():
    model = seeded_model()
    state = model.state_dict()
    state["blocks.0.cross_attn.k_faces.weight"] = state.pop("blocks.0.cross_attn.k_face.weight")
    with pytest.raises(RuntimeError):
        model.load_state_dict(state, strict=True)


def test_forward_matches_the_original_in_fp32():
    expected = torch.load(FIXTURES / "anytalker_tiny_forward.pt")["expected"]
    x, t, text, clip, audios, faces, masks = inputs()
    with torch.no_grad():
        out = seeded_model()(x, t, text, clip, audios, faces, masks)[0]
    assert out.shape == expected.shape
    assert torch.allclose(out, expected, atol=1e-5, rtol=1e-5), (out - expected).abs().max()


def test_the_timestep_embedding_is_computed_in_each_originals_dtype():
    """AnyTalker's model.py computes the sinusoid in float32, Wan2.1 (MultiTalk) in float64; near t = 1000
    the two differ by more than the parity tolerance."""
    from talkstudio.generators.anytalker.transformer import AnyTalkerTransformer
    from talkstudio.generators.multitalk.transformer import MultiTalkTransformer
    from talkstudio.generators.wan import sinusoidal_embedding

    t = torch.tensor([999.0, 987.3, 501.2])
    half = 128
    angles = torch.outer(t, torch.pow(10000, -torch.arange(half).to(t).div(half)))  # the original's float32
    original = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    ours = sinusoidal_embedding(256, t, AnyTalkerTransformer.timestep_dtype)
    assert torch.equal(ours, original)
    assert MultiTalkTransformer.timestep_dtype == torch.float64
    assert (sinusoidal_embedding(256, t, torch.float64) - original).abs().max() > 1e-5


def test_each_identity_drives_only_the_patches_of_its_face():
    # with one block, a token's output depends on identity i's audio only through mask_i
    x, t, text, clip, audios, faces, masks = inputs()
    model = seeded_model(num_layers=1)
    with torch.no_grad():
        base = model(x, t, text, clip, audios, faces, masks)
        other = torch.randn(audios[0].shape, generator=torch.Generator().manual_seed(9))
        changed = model(x, t, text, clip, [other, audios[1]], faces, masks)
    # identity 0 owns the even patches (2x2 pixels each, row-major over frames, rows, columns)
    patch_changed = (base - changed).abs().amax(dim=1).unflatten(2, (2, 2)).unflatten(4, (2, 2)).amax(dim=(3, 5))
    owned = masks[0].view(patch_changed.shape) > 0
    assert patch_changed[owned].min() > 0 and patch_changed[~owned].max() == 0


def test_deterministic():
    x, t, text, clip, audios, faces, masks = inputs()
    with torch.no_grad():
        a = seeded_model()(x, t, text, clip, audios, faces, masks)
        b = seeded_model()(x, t, text, clip, audios, faces, masks)
    assert torch.equal(a, b)


def _layout(root, config: dict, state: dict):
    from tests_anytalker_inputs import CONFIG

    fun = root / "Wan2.1-Fun-V1.1-1.3B-InP"
    (fun / "google" / "umt5-xxl").mkdir(parents=True)
    for name in ("models_t5_umt5-xxl-enc-bf16.pth", "Wan2.1_VAE.pth",
                 "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"):
        (fun / name).write_bytes(b"")
    (root / "wav2vec2-base-960h").mkdir()
    (root / "wav2vec2-base-960h" / "config.json").write_text("{}")
    (root / "AnyTalker").mkdir()
    (root / "AnyTalker" / "config_af2v_1_3B.json").write_text(json.dumps({**CONFIG, **config}))
    torch.save({"model": state}, root / "AnyTalker" / "1_3B-single-v1.pth")


def test_official_layout_loads_strictly_and_runs(tmp_path):
    from talkstudio.generators.anytalker.models import load_transformer, locate

    reference = seeded_model()
    _layout(tmp_path, {"model_type": "a2v_af", "in_dim": 36}, reference.state_dict())
    model = load_transformer(locate(tmp_path))
    x, t, text, clip, audios, faces, masks = inputs()
    with torch.no_grad():
        assert torch.equal(model(x, t, text, clip, audios, faces, masks),
                           reference(x, t, text, clip, audios, faces, masks))


def test_incomplete_layout_lists_what_is_missing(tmp_path):
    from talkstudio.errors import InputError
    from talkstudio.generators.anytalker.models import locate

    (tmp_path / "AnyTalker").mkdir()
    with pytest.raises(InputError) as caught:
        locate(tmp_path)
    message = str(caught.value)
    assert "Wan2.1_VAE.pth" in message and "1_3B-single-v1.pth" in message and "wav2vec2-base-960h" in message
    assert "hf download alibaba-pai/Wan2.1-Fun-V1.1-1.3B-InP" in message and "zzz66/AnyTalker-1.3B" in message


def test_a_checkpoint_with_other_keys_is_refused(tmp_path):
    from talkstudio.generators.anytalker.models import load_transformer, locate

    state = seeded_model().state_dict()
    state["blocks.0.cross_attn.k_faces.weight"] = state.pop("blocks.0.cross_attn.k_face.weight")
    _layout(tmp_path, {}, state)
    with pytest.raises(RuntimeError, match="k_face"):
        load_transformer(locate(tmp_path))


def test_the_legacy_14b_configuration_loads_strictly(tmp_path):
    from talkstudio.generators.anytalker.models import load_transformer, locate
    from tests_anytalker_inputs import LEGACY

    reference = seeded_model(**LEGACY)
    _layout(tmp_path, LEGACY, reference.state_dict())
    model = load_transformer(locate(tmp_path))
    with torch.no_grad():
        assert torch.equal(model(*inputs()), reference(*inputs()))


def test_wav2vec_features_match_the_original():
    pytest.importorskip("transformers")
    from talkstudio.generators.anytalker.audio import frame_features
    from tests_anytalker_inputs import seeded_wav2vec, wav2vec_input

    # made by the original Wav2VecModel + window code under transformers 4.52, on these weights
    expected = torch.load(FIXTURES / "anytalker_tiny_wav2vec.pt")["expected"]
    samples, frames = wav2vec_input()
    features = frame_features(seeded_wav2vec(), samples, frames)
    assert features.shape == (frames, 5, 3, 32) == expected.shape
    assert torch.allclose(features, expected, atol=1e-4), (features - expected).abs().max()
    # the window: frame i holds frames i-2..i+2, clamped at the ends
    assert torch.equal(features[0, 0], features[0, 2]) and torch.equal(features[5, 0], features[3, 2])


def test_face_masks_match_the_original():
    from talkstudio.generators.anytalker.masks import expand, identity_masks, inpaint_mask

    # made by the original expand_face_mask_flexible, gen_smooth_transition_mask_for_dit, gen_inference_masks
    fixture = torch.load(FIXTURES / "anytalker_masks.pt")
    masks = []
    for x1, y1, x2, y2 in [(10, 20, 50, 60), (100, 30, 150, 80)]:
        mask = torch.zeros(96, 160)
        mask[y1:y2, x1:x2] = 1.0
        masks.append(mask)
    expanded = [expand(m) for m in masks]
    for ours, theirs in zip(expanded, fixture["expanded"]):
        assert torch.allclose(ours, theirs, atol=1e-6)
    assert torch.allclose(inpaint_mask(expanded, 12, 20, 9), fixture["dit_mask"], atol=1e-6)
    assert torch.allclose(identity_masks(expanded, 12, 20, 3), fixture["identity"], atol=1e-6)


def test_square_boxes_stay_inside_the_picture():
    from talkstudio.generators.anytalker.masks import box_mask, square_box

    assert square_box((10, 20, 30, 50), 200, 100) == (0, 20, 50, 70)  # a 50 x 50 square about the centre
    assert square_box((0, 0, 10, 40), 200, 100)[:2] == (0, 0)
    assert square_box((190, 70, 10, 40), 200, 100)[2:] == (200, 100)
    assert box_mask((10, 20, 30, 50), 200, 100).sum() == 50 * 50


def test_unipc_schedule_and_steps_match_the_original():
    pytest.importorskip("diffusers")
    from talkstudio.generators.anytalker.sampling import make_scheduler
    from tests_anytalker_inputs import toy_flow

    # made by the original FlowUniPCMultistepScheduler(shift=5).set_timesteps(40, shift=3.0) on the same flow
    fixture = torch.load(FIXTURES / "anytalker_unipc.pt")
    scheduler = make_scheduler(40, 3.0)
    assert torch.equal(scheduler.timesteps, fixture["timesteps"])
    x, velocity = toy_flow()
    for t in scheduler.timesteps:
        x = scheduler.step(velocity(x, float(t)), t, x, return_dict=False)[0]
    assert torch.allclose(x, fixture["final"], atol=1e-5), (x - fixture["final"]).abs().max()


def test_cfg_pair_is_one_batched_forward():
    from talkstudio.generators.anytalker.sampling import guided

    cond, uncond = torch.full((1, 2), 3.0), torch.full((1, 2), 1.0)
    assert torch.equal(guided(torch.cat([cond, uncond]), 4.5), torch.full((1, 2), 10.0))


# expected sizes: the original's lines (audio2video_multiID.py:274-320) evaluated on these shapes
@pytest.mark.parametrize("size, expected", [((832, 480), (832, 448)), ((480, 832), (480, 832)),
                                            ((512, 512), (608, 608)), ((1536, 1024), (768, 512)),
                                            ((1280, 720), (832, 448)), ((640, 480), (704, 544)),
                                            ((720, 1280), (448, 832))])
def test_model_size_follows_the_original_area_rule(size, expected):
    from talkstudio.generators.anytalker.models import model_size

    assert model_size(*size) == expected


def test_legacy_14b_path_matches_the_original():
    from tests_anytalker_inputs import LEGACY

    # made by the original WanModel(legacy_audio_cross_attn=True) on these weights (strict load)
    fixture = torch.load(FIXTURES / "anytalker_tiny_legacy.pt")
    model = seeded_model(**LEGACY)
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == fixture["keys"]
    with torch.no_grad():
        out = model(*inputs())[0]
    assert torch.allclose(out, fixture["expected"], atol=1e-4), (out - fixture["expected"]).abs().max()


def test_frame_grouped_audio_attention_equals_the_dense_temporal_mask():
    from talkstudio.generators.anytalker.transformer import attend, frame_audio_attention

    g = torch.Generator().manual_seed(4)
    frames, h, w, heads, head_dim = 4, 2, 3, 2, 8
    video = 4 * (frames - 1) + 1
    q = torch.randn(2, frames * h * w, heads, head_dim, generator=g)
    k_face, v_face = torch.randn(2, 7, heads, head_dim, generator=g), torch.randn(2, 7, heads, head_dim, generator=g)
    k_audio = torch.randn(2, video * 32, heads, head_dim, generator=g)
    v_audio = torch.randn(2, video * 32, heads, head_dim, generator=g)
    # the original's dense mask: latent frame 0 hears all audio, frame t hears video frames 4(t-1)+1 .. 4t
    hears = torch.zeros(frames, video, dtype=torch.bool)
    hears[0] = True
    for t in range(1, frames):
        hears[t, (t - 1) * 4 + 1: t * 4 + 1] = True
    mask = hears.repeat_interleave(h * w, 0).repeat_interleave(32, 1)
    mask = torch.nn.functional.pad(mask, (7, 0), value=True)[None, None]
    dense = attend(q, torch.cat([k_face, k_audio], 1), torch.cat([v_face, v_audio], 1), mask)
    grouped = frame_audio_attention(q, k_face, v_face, k_audio, v_audio, (frames, h, w))
    assert torch.allclose(grouped, dense, atol=1e-6)


def test_the_14b_checkpoint_is_used_when_it_is_the_one_downloaded(tmp_path):
    from talkstudio.generators.anytalker import _variant

    (tmp_path / "AnyTalker").mkdir()
    assert _variant(tmp_path) == "1.3B"  # nothing there: the error will list the 1.3B files
    (tmp_path / "AnyTalker" / "14B-multi-v1.pth").write_bytes(b"")
    assert _variant(tmp_path) == "14B"
    (tmp_path / "AnyTalker" / "1_3B-single-v1.pth").write_bytes(b"")
    assert _variant(tmp_path) == "1.3B"


@pytest.mark.parametrize("overrides", [{}, "legacy"], ids=["a2v_af", "legacy-14b"])
def test_bfloat16_runs_close_to_float32(overrides):
    """The GPU precision: blocks in bf16, timestep embedding and head in float32, inputs in any dtype."""
    from talkstudio.generators.wan import cast_for_inference
    from tests_anytalker_inputs import LEGACY

    model = seeded_model(**(LEGACY if overrides == "legacy" else {}))
    with torch.no_grad():
        reference = model(*inputs())
        cast_for_inference(model, torch.bfloat16)
        assert model.blocks[0].ffn[0].weight.dtype == torch.bfloat16 and model.head.head.weight.dtype == torch.float32
        out = model(*inputs())
    assert out.dtype == torch.float32
    assert (out - reference).norm() / reference.norm() < 0.05


@pytest.mark.parametrize("legacy", [False, True], ids=["1.3B", "14B-legacy"])
def test_audio_and_image_sizes_come_from_the_config(legacy):
    """Sizes other than the official ones build and run: wav2vec windows of 3 layers x 16 channels,
    8 tokens a frame, CLIP tokens 24 wide."""
    from talkstudio.generators.anytalker.transformer import AnyTalkerConfig, AnyTalkerTransformer

    sizes = {"audio_layers": 3, "audio_channels": 16, "context_tokens": 8, "clip_dim": 24, "intermediate_dim": 20}
    extra = {"legacy_audio_cross_attn": True, "audio_output_dim": 32} if legacy else {}
    torch.manual_seed(0)
    model = AnyTalkerTransformer(AnyTalkerConfig(dim=48, ffn_dim=64, num_heads=2, num_layers=1, text_dim=16,
                                                 text_len=8, freq_dim=32, **sizes, **extra)).eval()
    x, t, text, _, _, _, masks = inputs()
    audios = [torch.randn(1, 5, 5, 3, 16) for _ in range(2)]
    clip, faces = torch.randn(1, 257, 24), [torch.randn(1, 257, 24) for _ in range(2)]
    with torch.no_grad():
        out = model(x, t, text, clip, audios, faces, masks)
    assert out.shape == (1, 16, 2, 4, 4) and torch.isfinite(out).all()
