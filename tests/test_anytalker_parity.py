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
    assert torch.allclose(out, expected, atol=1e-4, rtol=1e-4), (out - expected).abs().max()


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
