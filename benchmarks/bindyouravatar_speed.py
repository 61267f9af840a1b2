"""Bind-Your-Avatar DiT speed: one denoising step of the full-size model, on a GPU.

The model is CogVideoX-5B-I2V's MM-DiT (42 blocks, 48 heads x 64) with the released additions: 21 face
layers (a perceiver cross-attention per identity, then the embedding router: four spatial / temporal /
identity attention blocks at width 512 over both identities' tokens), an audio cross-attention per
latent frame after every block for each of the two voices. Random bf16 weights are made on the GPU;
the inputs are the released window: 720x480, 49 frames (13 latent frames, 17550 video tokens and 226
text tokens), both classifier-free-guidance rows in one batch, as the pipeline runs them.

Printed: seconds per step (one transformer forward on the batch of 2; `--repeats` after a warm-up),
seconds per window, estimated as 50 steps + the once-per-window conditions (face tokens through the
facial extractor and audio tokens through the audio projection, measured) + one VAE decode of the
window (CogVideoX's VAE at full size, random weights, measured once after a warm-up; `--no-decode`
leaves it out), peak GPU memory of the step, and model-FLOP utilisation from `flops` (matmuls only,
parts listed). The picture encodes and the T5 prompt are not counted (once per window, and T5's is
kept per prompt). There is no separate original formulation to compare with: the forward computes what
the original computes, in the same order, so the speed-up is printed as n/a.

On an H100/H200 the run takes about 1-2 minutes (building the 8.7B parameters, 4 forwards, 2 decodes); 17.4 GB
of weights and about 25 GB at the step's peak (an estimate: not yet run on a GPU).

Run on a GPU:  python benchmarks/bindyouravatar_speed.py          (720x480, 49 frames)
Check on CPU:  python benchmarks/bindyouravatar_speed.py --tiny   (a toy size, to test the script)
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from anytalker_speed import PEAK_TFLOPS, timed  # the same measurement as the other speed benchmarks
from talkstudio.generators.bindyouravatar.pipeline import MAX_TEXT_TOKENS, audio_tokens, identity_tokens
from talkstudio.generators.bindyouravatar.positions import rotary_embeddings
from talkstudio.generators.bindyouravatar.transformer import Additions, forward, make_transformer

STEPS = 50  # the backend's default
# CogVideoX-5B-I2V's transformer/config.json (the core Bind-Your-Avatar fine-tunes); 48 input channels here:
# noise, first frame and inpainting frame (the released 32-channel patch embedding is widened on loading)
COGVIDEOX_5B_I2V = {
    "_class_name": "CogVideoXTransformer3DModel", "activation_fn": "gelu-approximate", "attention_bias": True,
    "attention_head_dim": 64, "dropout": 0.0, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 32,
    "max_text_seq_length": 226, "norm_elementwise_affine": True, "norm_eps": 1e-05, "num_attention_heads": 48,
    "num_layers": 42, "out_channels": 16, "patch_size": 2, "sample_frames": 49, "sample_height": 60,
    "sample_width": 90, "spatial_interpolation_scale": 1.875, "temporal_compression_ratio": 4,
    "temporal_interpolation_scale": 1.0, "text_embed_dim": 4096, "time_embed_dim": 512,
    "timestep_activation_fn": "silu", "use_learned_positional_embeddings": True,
    "use_rotary_positional_embeddings": True}
# the audio projection's wav2vec2-base input: 5 rows per frame of 12 layers x 768
PROJECTION = {"seq_len": 5, "blocks": 12, "channels": 768}
ID_INPUTS = {"vit_dim": 1024, "id_dim": 1280, "vit_tokens": 577}  # EVA02-CLIP-L-336 levels; ArcFace + EVA embedding

TINY_CORE = {"num_attention_heads": 2, "attention_head_dim": 16, "out_channels": 2,
             "time_embed_dim": 8, "text_embed_dim": 12, "num_layers": 2, "max_text_seq_length": 8,
             "use_rotary_positional_embeddings": True, "use_learned_positional_embeddings": False}
TINY_PROJECTION = {"seq_len": 5, "blocks": 3, "channels": 4, "intermediate_dim": 16, "output_dim": 8,
                   "context_tokens": 4}
TINY_ID_INPUTS = {"vit_dim": 24, "id_dim": 24, "vit_tokens": 10}
TINY_VAE = {"in_channels": 3, "out_channels": 3, "block_out_channels": (8, 8, 8, 8), "latent_channels": 2,
            "layers_per_block": 1, "norm_num_groups": 2, "temporal_compression_ratio": 4, "scaling_factor": 0.7,
            "down_block_types": ("CogVideoXDownBlock3D",) * 4, "up_block_types": ("CogVideoXUpBlock3D",) * 4}


def released_additions(vit_dim: int = 1024, id_dim: int = 1280) -> Additions:
    """The released module sizes (Additions' defaults); the facial extractor's input widths can be narrowed to
    narrow identity encoders (gpu_check's folders), which changes only its two input mappings."""
    face = {} if (vit_dim, id_dim) == (1024, 1280) else {"vit_dim": vit_dim, "id_dim": id_dim}
    return Additions(face=face)


def tiny_additions() -> Additions:
    return Additions(face={"dim": 16, "depth": 5, "dim_head": 4, "heads": 2, "num_id_token": 3, "num_queries": 12,
                           "output_dim": 21, "vit_dim": TINY_ID_INPUTS["vit_dim"], "id_dim": TINY_ID_INPUTS["id_dim"]},
                     face_attention={"dim_head": 2, "heads": 2},
                     router={"num_id_token": 12, "num_heads": 2, "inner_dim1": 8, "inner_dim2": 4, "addtional_dim": 3,
                             "q_k_dim": 4},
                     audio={"audio_dim": 8, "num_attention_heads": 2, "attention_head_dim": 4,
                            "projection": TINY_PROJECTION})


def random_model(core: dict, additions: Additions, device, dtype=torch.bfloat16):
    """The DiT (48 input channels) with random weights N(0, 0.02), made on `device` and cast to `dtype` (on the
    way 35 GB in float32 at full size: made there, then cast)."""
    if str(device).startswith("cuda"):
        torch.cuda.empty_cache()  # what earlier checks left cached, for the 35 GB
    with torch.device(device):
        model = make_transformer({**core, "in_channels": 3 * core["out_channels"]}, additions).to(dtype)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.02)
    return model.eval()


def _weights(module: nn.Module) -> int:
    """Multiply-adds per token through every Linear of `module`."""
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear))


def flop_parts(model, latent_frames: int, lat_h: int, lat_w: int, text_len: int = MAX_TEXT_TOKENS,
               batch: int = 2, frames: int | None = None) -> dict:
    """Matmul FLOPs of one forward on `batch` rows (2: both CFG rows), by part; with `frames` (video frames),
    also the audio projection, which runs once per window (four voice rows: silent and heard)."""
    c = model.config
    p, d = c.patch_size, c.num_attention_heads * c.attention_head_dim
    per_frame = (lat_h // p) * (lat_w // p)
    L, S = latent_frames * per_frame, latent_frames * per_frame + text_len
    block = model.transformer_blocks[0]
    core = c.num_layers * (2 * S * (_weights(block.attn1) + _weights(block.ff)) + 4 * S * S * d)
    core += 2 * L * model.patch_embed.proj.weight.numel() + 2 * text_len * _weights(model.patch_embed.text_proj)
    core += 2 * L * _weights(model.proj_out)

    ids = 2
    face_layers = len(model.perceiver_cross_attention)
    cross = model.perceiver_cross_attention[0]
    queries = model.local_facial_extractor.num_queries
    inner = cross.heads * cross.dim_head
    faces = face_layers * ids * (2 * L * (_weights(cross.to_q) + _weights(cross.to_out))
                                 + 2 * queries * _weights(cross.to_kv) + 4 * L * queries * inner)

    router = model.router
    qk, width, tokens = router.to_q[0].in_features, router.feat_dim, ids * L
    blocks = 0
    for st in router.spatial_temporal_layers:
        blocks += 2 * tokens * _weights(st)
        blocks += 4 * width * (ids * latent_frames * per_frame ** 2 + ids * per_frame * latent_frames ** 2
                               + L * ids ** 2)  # scores and values: within a frame, across frames, across ids
    routing = face_layers * (2 * tokens * qk * qk + 2 * ids * queries * qk * qk + 2 * tokens * queries * qk
                             + blocks + 2 * tokens * width)

    audio_model = model.audio_model
    voices, attention = 2, audio_model.layers[0]["attn"]
    context = audio_model.audio_proj_model.context_tokens
    audio_inner = attention.heads * attention.to_q.out_features // attention.heads
    audio = len(audio_model.layers) * voices * (
        2 * L * (_weights(attention.to_q) + _weights(attention.to_out))
        + 2 * latent_frames * context * (_weights(attention.to_k) + _weights(attention.to_v))
        + 4 * L * context * audio_inner)

    parts = {"MM-DiT blocks": batch * core, "face cross-attention": batch * faces, "router": batch * routing,
             "audio cross-attention": batch * audio}
    if frames is not None:
        projection = audio_model.audio_proj_model
        rows, n = 2 * voices, latent_frames - 1
        mlp = _weights(nn.ModuleList([projection.proj1, projection.proj2, projection.proj3]))
        parts["audio projection (per window)"] = rows * (2 * frames * mlp + 3 * n * 2 * projection.conv1.weight.numel())
    return parts


def flops(model, latent_frames: int, lat_h: int, lat_w: int, text_len: int = MAX_TEXT_TOKENS, batch: int = 2) -> float:
    """Matmul FLOPs of one denoising step: one forward on both CFG rows."""
    return float(sum(flop_parts(model, latent_frames, lat_h, lat_w, text_len, batch).values()))


ADDED = ("local_facial_extractor", "perceiver_cross_attention", "router", "audio_model")


def parameters(model) -> dict:
    """Parameter counts: the CogVideoX core and each added module."""
    parts = {}
    for name, tensor in model.named_parameters():
        part = name.split(".")[0] if name.split(".")[0] in ADDED else "core"
        parts[part] = parts.get(part, 0) + tensor.numel()
    return parts


def inputs(model, frames: int, height: int, width: int, text_len: int, projection: dict, id_inputs: dict, device,
           dtype):
    """The step's inputs (latents, text, timesteps, rotary, face tokens, audio tokens, speakers) and the
    once-per-window conditions' inputs (identity embeddings and levels, wav2vec rows)."""
    c = model.config
    g = torch.Generator(device="cpu").manual_seed(0)
    latent_frames = (frames - 1) // 4 + 1

    def randn(*shape):
        return torch.randn(*shape, generator=g).to(device, dtype)

    identity = (randn(2, id_inputs["id_dim"]), [randn(2, id_inputs["vit_tokens"], id_inputs["vit_dim"])
                                                for _ in range(5)])
    rows = randn(2, frames + 4, projection["blocks"], projection["channels"])
    with torch.no_grad():
        faces = identity_tokens(model, identity, device).repeat(2, 1, 1, 1)
        audio = audio_tokens(model, rows, latent_frames, device)
    step = (randn(2, latent_frames, c.in_channels, height // 8, width // 8), randn(2, text_len, c.text_embed_dim),
            torch.tensor([500, 500], device=device),
            rotary_embeddings(height, width, latent_frames, c.patch_size, c.attention_head_dim, device), faces, audio,
            torch.eye(2, device=device)[None].repeat(2, 1, 1))
    return step, (identity, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a toy size, to check the script on a CPU")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-decode", action="store_true", help="leave the VAE decode out of the window")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    if args.tiny:
        core, additions, frames, height, width = TINY_CORE, tiny_additions(), 9, 64, 96
        projection, id_inputs, vae_config, text_len = TINY_PROJECTION, TINY_ID_INPUTS, TINY_VAE, 8
    else:
        core, additions, frames, height, width = COGVIDEOX_5B_I2V, released_additions(), 49, 480, 720
        projection, id_inputs, vae_config, text_len = PROJECTION, ID_INPUTS, {}, MAX_TEXT_TOKENS
    torch.manual_seed(0)
    model = random_model(core, additions, device, dtype)
    (x, text, t, rotary, faces, audio, speakers), (identity, rows) = inputs(
        model, frames, height, width, text_len, projection, id_inputs, device, dtype)
    latent_frames, lat_h, lat_w = x.shape[1], x.shape[3], x.shape[4]

    def step():
        with torch.no_grad():
            return forward(model, x, text, t, rotary, faces, audio, speakers)

    def conditions():
        with torch.no_grad():
            return identity_tokens(model, identity, device), audio_tokens(model, rows, latent_frames, device)

    parts = flop_parts(model, latent_frames, lat_h, lat_w, text_len, frames=frames)
    sizes = parameters(model)
    out, seconds, peak = timed(step, device, args.repeats)
    _, once, _ = timed(conditions, device, args.repeats)
    finite = bool(out.float().isfinite().all())
    model = out = None  # the decode runs alone, as after the pipeline's loop
    decode, decode_peak = float("nan"), float("nan")
    if not args.no_decode:
        decode, decode_peak = vae_decode(vae_config, latent_frames, lat_h, lat_w, device, dtype)

    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    peak_tflops = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    work = sum(v for k, v in parts.items() if "per window" not in k)
    mfu = work / seconds / (peak_tflops * 1e12) if peak_tflops else float("nan")
    window = STEPS * seconds + once + (0.0 if args.no_decode else decode)
    print(f"Bind-Your-Avatar DiT, {'tiny' if args.tiny else 'CogVideoX-5B-I2V + released additions'} at "
          f"{width}x{height}, {frames} frames ({latent_frames} latent, "
          f"{latent_frames * (lat_h // 2) * (lat_w // 2)} video tokens + {text_len} text), 2 voices, "
          f"both CFG rows in one batch, {name}, {dtype}")
    print("parameters: " + ", ".join(f"{k} {v / 1e9:.3g}B" if v > 1e8 else f"{k} {v / 1e6:.3g}M"
                                     for k, v in sizes.items()))
    print("FLOPs per step: " + ", ".join(f"{k} {v / 1e12:.3g}T" for k, v in parts.items() if "per window" not in k)
          + f"; total {work / 1e12:.4g}T (the audio projection: {parts['audio projection (per window)'] / 1e12:.3g}T "
          "once per window)")
    print(f"{'':22s} {'s/step':>8s} {f's/window ({STEPS})':>14s} {'peak GiB':>9s} {'MFU':>6s}")
    print(f"{'talkstudio':22s} {seconds:8.3f} {window:14.1f} {_shown(peak, '9.1f')} {_shown(mfu, '6.1%')}")
    decoded = ("the decode not measured (--no-decode)" if args.no_decode
               else f"{decode:.2f} s VAE decode (measured once after a warm-up; peak {_shown(decode_peak, '.1f')} GiB)")
    print(f"window = {STEPS} x {seconds:.3f} s steps + {once:.3f} s conditions (face and audio tokens) + {decoded}; "
          f"output finite: {finite}")
    print("speed-up n/a: no separate original formulation (the forward computes what the original computes, "
          "in the same order)")


def _shown(value: float, spec: str) -> str:
    """`value` formatted, or "-" in its width when not measured (no GPU)."""
    width = int(spec.split(".")[0] or 0)
    return format(value, spec) if value == value else "-".rjust(width)


def vae_decode(config: dict, latent_frames: int, lat_h: int, lat_w: int, device, dtype):
    """Seconds and peak GiB of one decode of a window's latents (`config` {}: CogVideoX's own VAE, random)."""
    from diffusers import AutoencoderKLCogVideoX

    if device == "cuda":
        torch.cuda.empty_cache()
    with torch.device(device):
        vae = AutoencoderKLCogVideoX(**config).to(dtype).eval()
    latents = torch.randn(1, vae.config.latent_channels, latent_frames, lat_h, lat_w, device=device, dtype=dtype)

    def decoded():
        with torch.no_grad():
            return vae.decode(latents / vae.config.scaling_factor).sample

    _, seconds, peak = timed(decoded, device, 1)
    return seconds, peak


if __name__ == "__main__":
    main()
