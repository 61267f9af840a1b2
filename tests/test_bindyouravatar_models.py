"""The Bind-Your-Avatar folder as it downloads: what is missing is listed at once, every released part loads
strictly under the original's names, and the LoRA is merged at full strength."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("safetensors")

from bindyouravatar_layout import FOLDER, tiny_additions, write_transformer_parts  # noqa: E402


def released(tmp_path):
    """The tiny released-format DiT parts; the other folders as empty stand-ins."""
    top = tmp_path / "models"
    root = top / FOLDER
    model, lora = write_transformer_parts(root)
    for stand_in in ("vae/config.json", "text_encoder/config.json", "tokenizer/x", "scheduler/scheduler_config.json",
                     "face_encoder/EVA02_CLIP_L_336_psz14_s6B.pt", "face_encoder/models/antelopev2/glintr100.onnx",
                     "../wav2vec2-base-960h/config.json"):
        (root / stand_in).parent.mkdir(parents=True, exist_ok=True)
        (root / stand_in).write_text("")
    return top, model, lora


def test_everything_missing_is_named_at_once_with_how_to_get_it(tmp_path):
    from talkstudio.errors import InputError
    from talkstudio.generators.bindyouravatar.models import locate

    with pytest.raises(InputError) as caught:
        locate(tmp_path)
    message = str(caught.value.problems[0].message) + caught.value.problems[0].hint
    for part in ("Bindyouravatar/transformer/config.json", "wav2vec2-base-960h/config.json", "audio_module/audio_modules.pt", "face_module/face_modules.pt",
                 "router/router_modules.pt", "lora_weight/pytorch_lora_weights.safetensors", "glintr100.onnx",
                 "hf download hyb1124/Bindyouravatar", "THUDM/CogVideoX-5b-I2V"):
        assert part in message


def test_the_released_parts_load_strictly_with_the_lora_at_full_strength(tmp_path):
    from talkstudio.generators.bindyouravatar.models import load_transformer, locate

    root, original, lora = released(tmp_path)
    files = locate(root)
    assert files.sam2 is None  # two-stage routing needs SAM2's weights
    model = load_transformer(files, tiny_additions())
    ours = model.state_dict()
    # the inpainting frame's 16 (here 2) channels were added with zero weights, as the original does
    widened = ours["patch_embed.proj.weight"]
    assert widened.shape[1] == 6 and torch.equal(widened[:, 4:], torch.zeros_like(widened[:, 4:]))
    assert torch.equal(widened[:, :4], original.state_dict()["patch_embed.proj.weight"][:, :4])
    for key, value in original.state_dict().items():
        if key == "patch_embed.proj.weight":
            continue
        if key.endswith(("attn1.to_q.weight", "attn1.to_k.weight")):
            stem = "transformer." + key.removesuffix(".weight")
            value = value + lora[f"{stem}.lora_B.weight"] @ lora[f"{stem}.lora_A.weight"]
        torch.testing.assert_close(ours[key], value, rtol=0, atol=1e-6, msg=key)
    assert not any(t.is_meta for t in list(model.parameters()) + list(model.buffers()))


def test_a_renamed_tensor_is_named(tmp_path):
    from talkstudio.errors import InputError
    from talkstudio.generators.bindyouravatar.models import load_transformer, locate

    root, _, _ = released(tmp_path)
    path = root / "Bindyouravatar" / "router" / "router_modules.pt"
    router = torch.load(path)
    router["final_projection.0.weight"] = router.pop("final_proj.0.weight")
    torch.save(router, path)
    with pytest.raises(InputError, match=r"missing: router.final_proj.0.weight.*unexpected: router.final_projection"):
        load_transformer(locate(root), tiny_additions())


def test_a_lora_that_misses_a_block_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    from talkstudio.errors import InputError
    from talkstudio.generators.bindyouravatar.models import load_transformer, locate

    root, _, _ = released(tmp_path)
    path = root / "Bindyouravatar" / "lora_weight" / "pytorch_lora_weights.safetensors"
    lora = {k: v for k, v in load_file(path).items() if "blocks.1.attn1.to_k" not in k}
    save_file(lora, path)
    with pytest.raises(InputError, match="transformer_blocks.1.attn1.to_k"):
        load_transformer(locate(root), tiny_additions())


SCENES = """\
video: {{size: 96x64}}
cast:
  ana: {{voice: ava}}
  ben: {{voice: ben}}
  cy: {{voice: ava}}
scenes:
  - id: alone
    cast: [{first}]
    lines: [{{ana: Hello.}}]
  - id: crowd
    cast: [ana, ben, cy]
    lines: [{{ben: Hi.}}]
"""


def test_scenes_without_exactly_two_people_are_refused_before_any_model_loads(write_script, tmp_path, capsys):
    from cli import main

    script = write_script(SCENES.format(first="ana"))
    assert main(["render", str(script), "--backend", "bindyouravatar", "--models", str(tmp_path / "none"), "-o",
                 str(tmp_path / "out.mp4")]) == 2
    err = capsys.readouterr().err
    assert "scene 'alone' has 1 person on stage (ana); bindyouravatar drives exactly 2 at once" in err
    assert "scene 'crowd' has 3 people on stage (ana, ben, cy)" in err


def test_doctor_says_what_is_missing_and_the_licence(tmp_path):
    from talkstudio.doctor import checks

    found = {c.name: c for c in checks(tmp_path)}["backend bindyouravatar"]
    assert not found.ok
    assert "Bindyouravatar/transformer/config.json" in found.detail and "CogVideoX licence" in found.detail
