"""The MultiTalk DiT against the original implementation (MeiGen-AI/MultiTalk@c1ad840) at a tiny size.

The fixture was made by /tmp/multitalk_ref/make_fixture.py (outside the project): the original WanModel
of wan/modules/multitalk_model.py, loaded strictly with the state dict of `seeded_model()`, run on
`inputs()` for two people (L-RoPE binding) and for one, in fp32, with flash-attn and xformers replaced by
exact SDPA. It also holds the key names and shapes of the real 14B model (built on the meta device).
"""

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tests_multitalk_inputs import inputs, seeded_model  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "multitalk_tiny.pt"


@pytest.fixture(scope="module")
def expected():
    return torch.load(FIXTURE, weights_only=True)


@pytest.mark.parametrize("persons, key", [(2, "two"), (1, "one")])
def test_forward_matches_the_original_in_fp32(expected, persons, key):
    model = seeded_model()
    with torch.no_grad():
        out = model(*inputs(persons))
    assert out.shape == (1, *expected[key].shape)
    torch.testing.assert_close(out[0], expected[key], atol=1e-4, rtol=0)


def test_reference_affinity_matches_the_original(expected):
    model = seeded_model()
    maps = []
    handle = model.blocks[0].self_attn.register_forward_hook(lambda m, a, out: maps.append(out[1][0]))
    with torch.no_grad():
        model(*inputs(2))
    handle.remove()
    torch.testing.assert_close(maps[0], expected["affinity"], atol=1e-6, rtol=0)


def test_the_real_14b_layout_is_ours(expected):
    from talkstudio.generators.multitalk.transformer import MultiTalkConfig, MultiTalkTransformer

    with torch.device("meta"):
        real = MultiTalkTransformer(MultiTalkConfig())
    assert {k: list(v.shape) for k, v in real.state_dict().items()} == expected["real_shapes"]


def test_l_rope_places_each_token_in_its_persons_range():
    from talkstudio.generators.multitalk.transformer import person_positions

    affinity = torch.tensor([[0.9, 0.5, 0.1, 0.2],   # person 1
                             [0.1, 0.2, 0.8, 0.3],   # person 2
                             [0.0, 0.3, 0.1, 0.6]])  # background
    positions = person_positions(affinity, class_range=24, class_interval=4)
    assert positions[0] == pytest.approx(4.0) and 0 <= positions[1] <= 4  # nearest person 1: scaled into [0, 4]
    assert positions[2] == pytest.approx(24.0)  # person 2's strongest token at the top of [20, 24]
    assert positions[3] == 12  # background in the middle, away from both voices


def test_two_people_need_their_masks():
    model = seeded_model()
    x, t, text, clip, audio, _ = inputs(2)
    with pytest.raises(ValueError, match="masks"):
        model(x, t, text, clip, audio, None)


def test_bfloat16_runs_close_to_float32():
    from talkstudio.generators.wan import cast_for_inference

    model = seeded_model()
    with torch.no_grad():
        reference = model(*inputs(2))
        out = cast_for_inference(model, torch.bfloat16)(*inputs(2))
    assert out.dtype == torch.float32 and (out - reference).norm() / reference.norm() < 0.05
