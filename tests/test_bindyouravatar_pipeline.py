"""One Bind-Your-Avatar window against the original pipeline (BindyouravatarPipeline.__call__, fp32, CPU).

The fixture holds a tiny run of the original at the released 13 x 30 x 45 token grid: a two-layer transformer
(face tokens given directly), a tiny CogVideoX VAE, CogVideoX-5B's DPM scheduler settings, three steps with
guidance 6, everything drawn from one seeded generator (how it was made: the fixture's "notes"). It stores the
weights; the decoded video is stored subsampled, for its first VAE batch (frames 0-8).
"""

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bindyouravatar_tiny import TINY_AUDIO, TINY_ROUTER, load  # noqa: E402

from talkstudio.generators.bindyouravatar import pipeline  # noqa: E402

ATOL = 1e-4
# the original ran with the face tokens given directly (a pass-through facial extractor): any small one will do
SMALL_FACE = {"dim": 16, "depth": 5, "dim_head": 4, "heads": 2, "num_id_token": 3, "num_queries": 12, "output_dim": 21}


@pytest.fixture(scope="module")
def fixture():
    return load("pipeline_window")


def _components(fixture):
    from diffusers import AutoencoderKLCogVideoX

    from talkstudio.generators.bindyouravatar.transformer import Additions, make_transformer

    config = fixture["config"]["transformer"]
    additions = Additions(cross_attn_interval=config["cross_attn_interval"],
                          audio_attn_interval=config["audio_attn_interval"],
                          local_face_scale=config["local_face_scale"], face=SMALL_FACE,
                          face_attention={"dim_head": 2, "heads": 2}, router=TINY_ROUTER, audio=TINY_AUDIO)
    model = make_transformer(config, additions).eval()
    state = dict(fixture["state"]["transformer"])
    # the original's facial extractor was a pass-through; it computes the router's position table itself
    state.update({k: v for k, v in model.state_dict().items() if k.startswith("local_facial_extractor.")})
    state["router.pos_emb"] = model.router.pos_emb
    model.load_state_dict(state, strict=True)
    vae = AutoencoderKLCogVideoX(**fixture["config"]["vae"]).eval()
    vae.load_state_dict(fixture["state"]["vae"], strict=True)
    inputs = fixture["inputs"]
    return pipeline.Components(transformer=model, vae=vae, scheduler=fixture["config"]["scheduler"],
                               prompts={"two people talk": inputs["prompt_embeds"], "": inputs["negative_prompt_embeds"]})


def _picture(small: torch.Tensor) -> np.ndarray:
    """The stored 30 x 45 picture as the original received it: each pixel a 16 x 16 block, 480 x 720."""
    return small.repeat_interleave(16, dim=0).repeat_interleave(16, dim=1).numpy()


def _window(fixture, **changes):
    inputs = fixture["inputs"]
    window = pipeline.Window(image=_picture(inputs["image_collage_u8_30x45"]),
                             background=_picture(inputs["image_bg_u8_30x45"]),
                             faces=torch.cat(inputs["id_cond_face_tokens"]), audio=inputs["audio_embs"][0],
                             speakers=inputs["af_matrix"][0], prompt="two people talk")
    for name, value in changes.items():
        setattr(window, name, value)
    return window


def _max_diff(a, b) -> float:
    return float((a.double() - b.double()).abs().max())


def test_draws_follow_the_original_order(fixture):
    """One generator: picture latent sample, initial noise, background latent sample (then the scheduler's)."""
    components, expected = _components(fixture), fixture["expected"]
    seed, shape = fixture["inputs"]["generator_seed"], expected["initial_noise"].shape
    channels = shape[2]
    with torch.no_grad():
        noise, condition = pipeline.draw_latents(components.vae, _window(fixture), shape,
                                                 torch.Generator().manual_seed(seed), None, "cpu", torch.float32)
    assert _max_diff(noise, expected["initial_noise"]) == 0.0
    assert _max_diff(condition[:, :1, :channels], expected["image_latents"]) < 1e-5
    assert _max_diff(condition[:, :1, channels:], expected["image_bg_latents"]) < 1e-5
    assert condition.shape == (1, 13, 2 * channels, 60, 90) and condition[:, 1:].abs().max() == 0
    # without a background: the same draws (the picture is sampled again in its place), zeros as its latents
    with torch.no_grad():
        _, alone = pipeline.draw_latents(components.vae, _window(fixture, background=None), shape,
                                         torch.Generator().manual_seed(seed), None, "cpu", torch.float32)
    assert torch.equal(alone[:, :, :channels], condition[:, :, :channels]) and alone[:, :, channels:].abs().max() == 0


def test_window_matches_the_original(fixture):
    components, expected = _components(fixture), fixture["expected"]
    call = fixture["config"]["call"]
    latents = pipeline.denoise(components, _window(fixture), steps=call["num_inference_steps"],
                               guide=call["guidance_scale"], seed=fixture["inputs"]["generator_seed"])
    print("final latents max abs diff:", _max_diff(latents, expected["final_latents"]))
    assert _max_diff(latents, expected["final_latents"]) < ATOL

    # the VAE decodes latent frames 0-2 as one batch (video frames 0-8), independently of the later ones
    frames = pipeline.decode(components, latents[:, :3])  # [9, 480, 720, 3]
    original = expected["frames_sub"].clamp(-1, 1)  # [3, 9, 60, 90] of [3, 49, 480, 720]
    ours = frames[:, 3::8, 5::8].permute(3, 0, 1, 2)
    print("decoded frames max abs diff:", _max_diff(ours, original))
    assert _max_diff(ours, original) < ATOL
    pixels = torch.from_numpy(pipeline.to_pixels(frames)[:, 3::8, 5::8]).int()
    off = (pixels - expected["frames_u8_sub"].int()).abs()
    assert off.max() <= 1 and (off > 0).float().mean() < 1e-3  # only values at a rounding edge may differ


def test_prompts_are_encoded_once_as_the_original_encodes_them():
    calls = []

    def tokenizer(text, **options):
        calls.append((text, options))
        return SimpleNamespace(input_ids=torch.tensor([[7, 1] + [0] * 224]))

    def text_encoder(ids):
        return (ids[..., None].float().repeat(1, 1, 3),)

    text_encoder.device = "cpu"
    components = pipeline.Components(transformer=None, vae=None, scheduler={}, tokenizer=tokenizer,
                                     text_encoder=text_encoder)
    first = pipeline.prompt_embedding(components, "hello", "cpu")
    again = pipeline.prompt_embedding(components, "hello", "cpu")
    assert first.shape == (1, 226, 3) and torch.equal(first, again) and len(calls) == 1
    assert calls[0] == ("hello", {"padding": "max_length", "max_length": 226, "truncation": True,
                                  "add_special_tokens": True, "return_tensors": "pt"})
