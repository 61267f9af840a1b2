"""Bind-Your-Avatar's modules against the original code (Yubo-Shankui/Bind-Your-Avatar-Implementation@8b72624)
at tiny sizes, fp32 on the CPU: face modules, the embedding router, the audio module and the whole patched
CogVideoX transformer (router-driven and with fixed routing masks), each loaded strictly under the original's
key names. How the fixtures were made: tests/bindyouravatar_tiny.py."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from bindyouravatar_tiny import TINY_AUDIO, TINY_ROUTER, checksums, fill, load, tiny_transformer  # noqa: E402

TOLERANCE = 1e-4


def _close(ours, theirs):
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max() <= TOLERANCE


def test_perceiver_cross_attention_returns_what_the_router_reads():
    from talkstudio.generators.bindyouravatar.face import PerceiverCrossAttention

    fixture = load("perceiver_ca")
    module = PerceiverCrossAttention(**fixture["config"]).eval()
    module.load_state_dict(fixture["state"], strict=True)
    with torch.no_grad():
        outputs = module(fixture["inputs"]["x_face_tokens"], fixture["inputs"]["latents_video_tokens"])
    for ours, name in zip(outputs, ("out", "weight_out", "q_out", "k_out")):
        _close(ours, fixture["expected"][name])


def test_local_facial_extractor():
    from talkstudio.generators.bindyouravatar.face import LocalFacialExtractor

    fixture = load("lfe")
    module = fill(LocalFacialExtractor(**fixture["config"]), fixture["init"]["seed"], fixture["init"]["scale"]).eval()
    expected_sums = fixture["state_checksums"]
    assert set(module.state_dict()) == set(expected_sums)  # the original's key names, every one
    for key, (total, magnitude) in checksums(module.state_dict()).items():
        assert total == pytest.approx(expected_sums[key][0], rel=1e-6, abs=1e-3), key
    with torch.no_grad():
        out = module(fixture["inputs"]["x_id_cond"], fixture["inputs"]["y_vit_hidden"])
    _close(out, fixture["expected"]["latents"])


@pytest.mark.parametrize("name", ["router", "router_smallgrid"])
def test_router_gives_per_identity_probabilities(name):
    from talkstudio.generators.bindyouravatar.router import RELEASED_GRID, EmbeddingRouter

    fixture = load(name)
    grid = tuple(fixture.get("grid_override", dict(zip(("frames", "height", "width"), RELEASED_GRID))).values())
    router = EmbeddingRouter(**TINY_ROUTER, num_layers=fixture["config"]["num_layers"], grid=grid).eval()
    state = dict(fixture["state"])
    state.setdefault("pos_emb", router.pos_emb)  # not stored at the released grid: the same formula
    router.load_state_dict(state, strict=True)
    inputs = fixture["inputs"]
    layers = [inputs["layer_idx"]] if "layer_idx" in inputs else [0, 1]
    for layer in layers:
        with torch.no_grad():
            out = router(inputs["q_out"], inputs["k_out"], layer, grid)
        expected = fixture["expected"]["routing"] if "routing" in fixture["expected"] else fixture["expected"][f"layer{layer}"]
        _close(out, expected)
        assert out.min() >= 0 and out.max() <= 1  # sigmoids, one per identity, not normalised
    assert not torch.allclose(out.sum(-1), torch.ones_like(out.sum(-1)))


def test_audio_rows_to_tokens_per_latent_frame_and_their_attention():
    from talkstudio.generators.bindyouravatar.audio import AudioAwareModel

    fixture = load("audio")
    module = AudioAwareModel(dim=32, num_layers=2, **TINY_AUDIO).eval()
    module.load_state_dict(fixture["state"], strict=True)
    inputs, expected = fixture["inputs"], fixture["expected"]
    with torch.no_grad():
        _close(module.windows(inputs["audio_rows"], 13), expected["windows"])
        tokens = module.tokens(inputs["audio_rows"], 13)
        _close(tokens, expected["tokens"])
        _close(module.tokens(inputs["audio_rows_small"], 3), expected["tokens_small"])
        _close(module(tokens, inputs["hidden_states"], 13, 1), expected["attn_out_layer1"])
    with pytest.raises(ValueError, match="need 53 audio rows"):
        module.windows(inputs["audio_rows"][:, :50], 13)


@pytest.mark.parametrize("name", ["transformer_router", "transformer_forcing"])
def test_whole_transformer(name):
    """Two batch rows (speaker matrices eye and 1 - eye, t = 900 and 300) through four blocks with face layers
    every second block and audio after every block, at the released 13 x 30 x 45 token grid."""
    from talkstudio.generators.bindyouravatar.positions import rotary_embeddings
    from talkstudio.generators.bindyouravatar.transformer import forward

    fixture = load(name)
    model = tiny_transformer(fixture)
    inputs = fixture["inputs"]
    faces = torch.stack(inputs["id_cond"], dim=1)  # the original's run took these as the identity tokens
    with torch.no_grad():
        audio = model.audio_model.tokens(inputs["audio_embeds"].flatten(0, 1), 13).unflatten(0, (2, 2))
        out = forward(model, inputs["hidden_states"].float(), inputs["encoder_hidden_states"], inputs["timestep"],
                      rotary_embeddings(480, 720, 13, 2, 16), faces, audio, inputs["af_matrix"],
                      inputs.get("routing_logits_forcing"))
    _close(out, fixture["expected"]["sample"])
