"""The Wan CLIP image encoder against the original implementation, at a tiny size on the CPU.

The fixture was made by /tmp/anytalker_ref/make_clip_fixture.py (outside the project): the original
VisionTransformer (HKUST-C4G/AnyTalker, wan/modules/clip.py) with seeded random weights (its state dict is
stored with the `visual.` prefix it has inside the full CLIP checkpoint), run through the original
CLIPModel.visual (bicubic resize, [-1, 1] -> CLIP mean/std, `use_31_block=True`, i.e. all blocks but the last:
2 of 3 here) in fp32 with exact attention. It also holds the real checkpoint's key names and shapes (text tower
included), so the full-size layout is checked without the 4.8 GB file.
"""

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import CLIPVisionConfig, CLIPVisionModel  # noqa: E402

from talkstudio.generators.anytalker import image_encoder  # noqa: E402
from talkstudio.generators.anytalker.image_encoder import (  # noqa: E402
    VIT_H_14_CONFIG, WanClipImageEncoder, build_vision_model, convert_wan_clip_visual_state_dict)

FIXTURE = Path(__file__).parent / "fixtures" / "wan_clip_tiny.pt"


@pytest.fixture(scope="module")
def expected():
    return torch.load(FIXTURE, weights_only=True)


def hf_config(original: dict) -> dict:
    return dict(hidden_size=original["dim"], intermediate_size=original["dim"] * original["mlp_ratio"],
                num_hidden_layers=original["num_layers"], num_attention_heads=original["num_heads"],
                image_size=original["image_size"], patch_size=original["patch_size"],
                hidden_act=original["activation"], layer_norm_eps=original["norm_eps"])


def tower(model):
    return getattr(model, "vision_model", model)  # transformers < 5 nest it


def test_converted_tiny_state_loads_strictly(expected):
    converted = convert_wan_clip_visual_state_dict(expected["state"])
    # each block's fused qkv weight and bias became three each; the unused projection head is the only key dropped
    layers = expected["config"]["num_layers"]
    assert len(converted) == len(expected["state"]) - 1 + 4 * layers
    assert "encoder.layers.2.self_attn.v_proj.bias" in converted
    model = CLIPVisionModel(CLIPVisionConfig(**hf_config(expected["config"])))
    tower(model).load_state_dict(converted, strict=True)


def test_non_visual_keys_are_ignored(expected):
    state = {**expected["state"], "textual.token_embedding.weight": torch.zeros(3, 2),
             "log_scale": torch.zeros(())}
    assert convert_wan_clip_visual_state_dict(state).keys() == \
        convert_wan_clip_visual_state_dict(expected["state"]).keys()


def test_encode_matches_the_original_31_block_path_in_fp32(expected):
    model = build_vision_model(convert_wan_clip_visual_state_dict(expected["state"]), hf_config(expected["config"]))
    encode = WanClipImageEncoder(model)
    tokens = encode(expected["images"])
    assert tokens.shape == expected["tokens"].shape == (2, 17, 16)
    torch.testing.assert_close(tokens, expected["tokens"], atol=1e-4, rtol=0)
    # a [B, 3, F, H, W] video: every frame an image, batch-major, as the original concatenates them
    torch.testing.assert_close(encode(expected["video"]), expected["video_tokens"], atol=1e-4, rtol=0)


def test_full_depth_and_hidden_states(expected):
    # the last block (dropped by load_image_encoder) converts right too, and the 31-block output is
    # hidden_states[num_layers - 1] of the untruncated model (hidden_states[0]: embeddings after pre_layrnorm)
    config = hf_config(expected["config"])
    model = build_vision_model(convert_wan_clip_visual_state_dict(expected["state"]), config, keep_last_block=True)
    encode = WanClipImageEncoder(model)
    torch.testing.assert_close(encode(expected["images"]), expected["full_depth"], atol=1e-4, rtol=0)
    x = torch.nn.functional.interpolate(expected["images"], size=(32, 32), mode="bicubic", align_corners=False)
    x = (x * 0.5 + 0.5 - torch.tensor(image_encoder.CLIP_MEAN).view(1, 3, 1, 1)) / \
        torch.tensor(image_encoder.CLIP_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        hidden = model(pixel_values=x, output_hidden_states=True).hidden_states
    assert len(hidden) == config["num_hidden_layers"] + 1
    torch.testing.assert_close(hidden[config["num_hidden_layers"] - 1], expected["tokens"], atol=1e-4, rtol=0)


def test_unknown_visual_key_is_named(expected):
    for key in ("visual.transformer.0.attn.to_out.weight", "visual.patch_embedding.bias", "visual.proj"):
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            convert_wan_clip_visual_state_dict({**expected["state"], key: torch.zeros(1)})


def test_vit_h_14_config_is_the_original(expected):
    real = expected["real_config"]
    assert real["pre_norm"] and not real["post_norm"] and real["mlp_activation"] == "GELU"
    assert VIT_H_14_CONFIG == hf_config(real)


def test_real_checkpoint_layout_loads_strictly(expected):
    state = {k: torch.empty(shape, device="meta") for k, shape in expected["real_shapes"].items()}
    assert any(not k.startswith("visual.") for k in state)  # the text tower is in the file, and ignored
    converted = convert_wan_clip_visual_state_dict(state)
    model = build_vision_model(converted, VIT_H_14_CONFIG, device="meta")
    assert len(tower(model).encoder.layers) == 31
    assert tower(model).embeddings.position_embedding.weight.shape == (257, 1280)
    with torch.device("meta"):
        out = model(pixel_values=torch.empty(1, 3, 224, 224)).last_hidden_state
    assert out.shape == (1, 257, 1280)


def test_load_image_encoder_reads_a_checkpoint_file(expected, tmp_path, monkeypatch):
    # the loader itself, with the tiny configuration in place of the real one
    path = tmp_path / "clip.pth"
    torch.save({**expected["state"], "log_scale": torch.zeros(())}, path)
    monkeypatch.setattr(image_encoder, "VIT_H_14_CONFIG", hf_config(expected["config"]))
    encode = image_encoder.load_image_encoder(path)
    torch.testing.assert_close(encode(expected["images"]), expected["tokens"], atol=1e-4, rtol=0)
    half = image_encoder.load_image_encoder(path, dtype=torch.bfloat16)
    assert half(expected["images"]).dtype == torch.bfloat16
