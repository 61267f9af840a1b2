"""The Wan2.1 VAE loader against the original implementation, at a tiny size on the CPU.

The fixtures were made by /tmp/anytalker_ref/make_vae_fixture.py (outside the project): the original
`WanVAE_` (HKUST-C4G/AnyTalker, wan/modules/vae.py) with seeded random weights (its state dict, in
the original key layout, is wan_vae_tiny_state.pt), encoding a seeded video to its posterior mean and
decoding that back, in fp32 with an identity scale. The fixture also holds the real checkpoint's key
names and shapes, so the full-size layout is checked without the 500 MB file.
"""

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from diffusers import AutoencoderKLWan  # noqa: E402

from talkstudio.generators.anytalker import vae as wan_vae  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
STATE = FIXTURES / "wan_vae_tiny_state.pt"


@pytest.fixture(scope="module")
def expected():
    return torch.load(FIXTURES / "wan_vae_tiny.pt", weights_only=True)


def diffusers_config(original: dict) -> dict:
    return dict(base_dim=original["dim"], z_dim=original["z_dim"], dim_mult=original["dim_mult"],
                num_res_blocks=original["num_res_blocks"], attn_scales=original["attn_scales"],
                temperal_downsample=original["temperal_downsample"], dropout=original["dropout"])


@pytest.fixture
def tiny_vae(expected, monkeypatch):
    # load_wan_vae itself, with the tiny configuration in place of the real one
    monkeypatch.setattr(wan_vae, "WAN21_VAE_CONFIG", diffusers_config(expected["config"]))
    return wan_vae.load_wan_vae(STATE)


def test_converted_tiny_state_loads_strictly(expected):
    state = torch.load(STATE, weights_only=True)
    converted = wan_vae.convert_wan_vae_state_dict(state)
    assert len(converted) == len(state)
    vae = AutoencoderKLWan(**diffusers_config(expected["config"]))
    vae.load_state_dict(converted, strict=True)
    # the decoder's stages were regrouped from the flat list, with both kinds of upsampler
    assert "decoder.up_blocks.0.upsamplers.0.time_conv.weight" in converted
    assert "decoder.up_blocks.1.upsamplers.0.resample.1.weight" in converted
    assert "decoder.up_blocks.2.resnets.1.conv2.weight" in converted


def test_real_checkpoint_layout_loads_strictly_into_the_wan21_config(expected):
    state = {k: torch.empty(shape, device="meta") for k, shape in expected["wan21_shapes"].items()}
    with torch.device("meta"):
        vae = AutoencoderKLWan(**wan_vae.WAN21_VAE_CONFIG)
    vae.load_state_dict(wan_vae.convert_wan_vae_state_dict(state), strict=True, assign=True)


def test_wan21_config_is_the_diffusers_default():
    # so the defaults' latents_mean / latents_std, equal to the original wrapper's, come with it
    with torch.device("meta"):
        ours = AutoencoderKLWan(**wan_vae.WAN21_VAE_CONFIG).config
        default = AutoencoderKLWan().config
    assert {k: v for k, v in ours.items() if not k.startswith("_")} == \
        {k: v for k, v in default.items() if not k.startswith("_")}


def test_encode_and_decode_match_the_original_in_fp32(tiny_vae, expected):
    video = torch.randn(1, 3, 5, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        mu = tiny_vae.encode(video).latent_dist.mode()
        decoded = tiny_vae.decode(expected["mu"]).sample
    assert mu.shape == expected["mu"].shape
    torch.testing.assert_close(mu, expected["mu"], atol=1e-4, rtol=0)
    # diffusers clamps to [-1, 1] (as the original wrapper does); the fixture stays inside, so nothing is hidden
    assert expected["decoded"].abs().max() < 1
    assert decoded.shape == expected["decoded"].shape
    torch.testing.assert_close(decoded, expected["decoded"], atol=1e-4, rtol=0)


def test_unknown_key_is_named():
    state = torch.load(STATE, weights_only=True)
    state["decoder.upsamples.0.residual.9.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"decoder\.upsamples\.0\.residual\.9\.weight"):
        wan_vae.convert_wan_vae_state_dict(state)
    with pytest.raises(ValueError, match="model_ema"):
        wan_vae.convert_wan_vae_state_dict({"model_ema.conv1.weight": torch.zeros(1)})
