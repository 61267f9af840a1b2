"""The Wan T5 text encoder loader against the original implementation, at a tiny size on the CPU.

The fixture was made by /tmp/anytalker_ref/make_t5_fixture.py (outside the project): the original
`T5Encoder` (HKUST-C4G/AnyTalker, wan/modules/t5.py) in umt5's layout (a relative position embedding
in every block) with seeded random weights, whose state dict in the original key layout it holds,
with its outputs for fixed token ids and masks (fp32, and bf16 for the longer batch). It also holds
the real umt5-xxl encoder checkpoint's key names and shapes, so the full-size layout is checked
without the 11 GB file. The real umt5-xxl tokenizer is not available offline; a stand-in records
how it is called.
"""

from pathlib import Path
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import UMT5Config, UMT5EncoderModel  # noqa: E402

from talkstudio.generators.anytalker import text_encoder as te  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "wan_t5_tiny.pt"


@pytest.fixture(scope="module")
def expected():
    return torch.load(FIXTURE, weights_only=True)


def umt5_config(original: dict) -> dict:
    """The original T5Encoder's arguments as UMT5Config kwargs (max_dist is T5RelativeEmbedding's fixed 128)."""
    return dict(vocab_size=original["vocab"], d_model=original["dim"],
                d_kv=original["dim_attn"] // original["num_heads"], d_ff=original["dim_ffn"],
                num_layers=original["num_layers"], num_heads=original["num_heads"],
                relative_attention_num_buckets=original["num_buckets"], relative_attention_max_distance=128,
                feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6)


@pytest.fixture
def checkpoint(expected, tmp_path):
    path = tmp_path / "models_t5_tiny.pth"
    torch.save(expected["state"], path)
    return path


def tiny_model(expected, checkpoint, dtype=None):
    return te.load_umt5_encoder(checkpoint, dtype=dtype, config=umt5_config(expected["config"]))


def assert_rows_match(rows, expected_out, mask, atol):
    """Only each row's real tokens, as the original T5EncoderModel trims them."""
    lengths = mask.sum(dim=1).tolist()
    assert [tuple(row.shape) for row in rows] == [(n, expected_out.shape[-1]) for n in lengths]
    for row, want, n in zip(rows, expected_out, lengths):
        torch.testing.assert_close(row.float(), want[:n].float(), atol=atol, rtol=0)


def test_converted_tiny_state_loads_strictly(expected):
    converted = te.convert_wan_t5_state_dict(expected["state"])
    assert len(converted) == len(expected["state"]) + 1  # the token embedding under both tied names
    assert converted["shared.weight"] is converted["encoder.embed_tokens.weight"]
    model = UMT5EncoderModel(UMT5Config(**umt5_config(expected["config"])))
    model.load_state_dict(converted, strict=True)
    # the gated half of the original's ffn is the one that goes through the GELU
    torch.testing.assert_close(model.encoder.block[1].layer[1].DenseReluDense.wi_0.weight,
                               expected["state"]["blocks.1.ffn.gate.0.weight"])


def test_output_matches_the_original_in_fp32(expected, checkpoint):
    model = tiny_model(expected, checkpoint)
    assert model.shared.weight is model.encoder.embed_tokens.weight
    encoder = te.TextEncoder(model, tokenizer=None)
    assert_rows_match(encoder.encode_ids(expected["ids"], expected["mask"]), expected["output"], expected["mask"],
                      atol=1e-4)
    # a batch of two lengths, far enough apart to reach the logarithmic position buckets
    assert_rows_match(encoder.encode_ids(expected["long_ids"], expected["long_mask"]), expected["long_output"],
                      expected["long_mask"], atol=1e-4)


def test_output_matches_the_original_in_bf16(expected, checkpoint):
    model = tiny_model(expected, checkpoint, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    rows = te.TextEncoder(model, tokenizer=None).encode_ids(expected["long_ids"], expected["long_mask"])
    assert rows[0].dtype == torch.bfloat16
    # eager attention follows the original's operations; allow one bf16 step at the outputs' scale
    assert_rows_match(rows, expected["long_output_bf16"], expected["long_mask"], atol=4e-3)


def test_unknown_key_is_named(expected):
    state = dict(expected["state"])
    state["blocks.0.ffn.gate.1.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"blocks\.0\.ffn\.gate\.1\.weight"):
        te.convert_wan_t5_state_dict(state)
    # a shared-position (plain T5) encoder is not what Wan ships
    with pytest.raises(ValueError, match=r"pos_embedding\.embedding\.weight"):
        te.convert_wan_t5_state_dict({"pos_embedding.embedding.weight": torch.zeros(1)})


def test_real_checkpoint_layout_loads_strictly_into_the_xxl_config(expected):
    shapes = expected["xxl_shapes"]
    assert len(shapes) == 2 + 24 * 10 and shapes["token_embedding.weight"] == (256384, 4096)
    state = {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}
    with torch.device("meta"):
        model = UMT5EncoderModel(UMT5Config(**te.UMT5_XXL_CONFIG))
    model.load_state_dict(te.convert_wan_t5_state_dict(state), strict=True, assign=True)
    assert model.encoder.block[23].layer[0].SelfAttention.relative_attention_bias.weight.shape == (32, 64)


class RecordingTokenizer:
    """Stands in for the umt5-xxl tokenizer: returns the fixture's ids and mask and records the call."""

    def __init__(self, ids, mask):
        self.ids, self.mask, self.calls = ids, mask, []

    def __call__(self, texts, **kwargs):
        self.calls.append((texts, kwargs))
        return SimpleNamespace(input_ids=self.ids, attention_mask=self.mask)


@pytest.mark.filterwarnings("ignore:ftfy is not installed")
def test_load_text_encoder_tokenizes_and_trims_as_the_original(expected, checkpoint, monkeypatch):
    import transformers

    tokenizer = RecordingTokenizer(expected["ids"], expected["mask"])
    loaded_from = []

    def from_pretrained(folder, **kwargs):
        loaded_from.append((folder, kwargs))
        return tokenizer

    monkeypatch.setattr(te, "UMT5_XXL_CONFIG", umt5_config(expected["config"]))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", from_pretrained)
    encoder = te.load_text_encoder(checkpoint, "google/umt5-xxl")
    rows = encoder.encode(["  two\tspeakers \n &amp;amp; a\u3000stage  "])

    assert loaded_from == [("google/umt5-xxl", {"local_files_only": True})]
    # HuggingfaceTokenizer(seq_len=512, clean='whitespace') called with add_special_tokens=True
    assert tokenizer.calls == [(["two speakers & a stage"], dict(
        return_tensors="pt", padding="max_length", truncation=True, max_length=512, add_special_tokens=True))]
    assert_rows_match(rows, expected["output"], expected["mask"], atol=1e-4)


@pytest.mark.filterwarnings("ignore:ftfy is not installed")
def test_clean_prompt_is_the_originals_whitespace_cleaning():
    assert te.clean_prompt("a  b\n\tc") == "a b c"
    assert te.clean_prompt("&lt;b&gt; &amp;amp;") == "<b> &"  # unescaped twice
    assert te.clean_prompt(" \u00a0 x\u2003y \u3000") == "x y"  # Unicode whitespace, as the regex module's \s
