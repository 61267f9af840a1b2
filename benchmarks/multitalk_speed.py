"""MultiTalk DiT speed: one denoising step of talkstudio's formulation against the original's, in one run.

A step is three guidance passes (cond, no text, no text and no audio) for two people.
Ours: cond and no-text share their voices and run as one batched forward; the reference-frame
affinity behind L-RoPE is computed over chunks of queries. Original formulation: three separate
forwards, and the affinity over all queries at once (in two halves of the heads, as the original).
Both run the same random weights (full 14B size by default) on the same inputs; the script prints
seconds per step and per 81-frame chunk (40 steps), peak GPU memory, model-FLOP utilisation and
the largest difference between the two guided outputs.

Run on a GPU:  python benchmarks/multitalk_speed.py            (480p bucket 896x448, 81 frames)
Check on CPU:  python benchmarks/multitalk_speed.py --tiny     (a toy size, to test the script)
"""

from __future__ import annotations

import argparse

import torch

import talkstudio.generators.multitalk.transformer as transformer
from anytalker_speed import compare  # the same measurement and table as the AnyTalker benchmark
from talkstudio.generators.multitalk.transformer import MultiTalkConfig, MultiTalkTransformer
from talkstudio.generators.wan import cast_for_inference

TEXT_GUIDE, AUDIO_GUIDE = 5.0, 4.0


def original_affinity(q, k, grid, masks):
    """The original's map: softmax over the reference keys for every query at once, per half of the heads."""
    per_frame = grid[1] * grid[2]
    half = q.shape[2] // 2
    maps = []
    for heads in (slice(0, half), slice(half, None)):
        queries = q[0, :, heads].transpose(0, 1) * q.shape[-1] ** -0.5
        scores = (queries @ k[0, :per_frame, heads].transpose(0, 1).transpose(1, 2)).softmax(-1)
        maps.append(torch.einsum("hcr,kr->kc", scores, masks / masks.sum(1, keepdim=True)) / scores.shape[0])
    return (maps[0] + maps[1]) / 2


def inputs(config, frames, height, width, device, dtype):
    g = torch.Generator(device="cpu").manual_seed(0)
    latent_frames, lat_h, lat_w = (frames - 1) // 4 + 1, height // 8, width // 8

    def randn(*shape):
        return torch.randn(*shape, generator=g).to(device, dtype)

    masks = torch.zeros(3, lat_h, lat_w, device=device)
    masks[0, :, : lat_w // 2], masks[1, :, lat_w // 2:] = 1, 1
    masks[2, : lat_h // 8] = 1
    masks[0, : lat_h // 8] = masks[1, : lat_h // 8] = 0
    text = randn(2, min(64, config.text_len), config.text_dim)  # prompt, negative prompt
    return (randn(1, config.in_dim, latent_frames, lat_h, lat_w), torch.tensor([500.0], device=device), text,
            randn(1, 257, 1280), randn(1, 2, frames, 5, 12, 768), masks)


def guided(cond, no_text, uncond):
    return uncond + TEXT_GUIDE * (cond - no_text) + AUDIO_GUIDE * (no_text - uncond)


def flops(config, latent_frames, lat_h, lat_w) -> float:
    """Matmul FLOPs of one step: three single-sample forwards (two people; silence for the third)."""
    d, L = config.dim, latent_frames * (lat_h // 2) * (lat_w // 2)
    reference = (lat_h // 2) * (lat_w // 2)
    block = (4 * L * d * d * 2 + 2 * 2 * L * L * d  # self-attention
             + 2 * L * reference * d  # affinity to the reference frame
             + L * d * d * 2 + 2 * config.text_len * d * d * 2 + 2 * 2 * L * config.text_len * d  # text
             + 2 * 257 * d * d * 2 + 2 * 2 * L * 257 * d + L * d * d * 2  # image, output
             + 2 * L * d * d * 2 + 2 * 2 * L * 64 * d + latent_frames * 64 * config.output_dim * 2 * d * 2  # audio
             + 2 * L * d * config.ffn_dim * 2)  # feed-forward
    return 3 * config.num_layers * block


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a toy size, to check the script on a CPU")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    if args.tiny:
        config, frames, height, width = MultiTalkConfig(dim=48, ffn_dim=64, num_heads=2, num_layers=2, text_dim=16,
                                                        text_len=8, freq_dim=32, intermediate_dim=16,
                                                        output_dim=32), 9, 32, 48
    else:
        config, frames, height, width = MultiTalkConfig(), 81, 448, 896
    torch.manual_seed(0)
    with torch.device(device):
        model = cast_for_inference(MultiTalkTransformer(config), dtype).eval()
    x, t, text, clip, audio, masks = inputs(config, frames, height, width, device, dtype)
    silence = torch.zeros_like(audio[:, :1])

    def ours():
        with torch.no_grad():
            cond, no_text = model(x.repeat(2, 1, 1, 1, 1), t.repeat(2), text, clip.repeat(2, 1, 1),
                                  audio.repeat(2, 1, 1, 1, 1, 1), masks).chunk(2)
            return guided(cond, no_text, model(x, t, text[1:], clip, silence))

    def original():
        saved = transformer.reference_affinity
        transformer.reference_affinity = original_affinity
        try:
            with torch.no_grad():
                cond = model(x, t, text[:1], clip, audio, masks)
                no_text = model(x, t, text[1:], clip, audio, masks)
                return guided(cond, no_text, model(x, t, text[1:], clip, silence))
        finally:
            transformer.reference_affinity = saved

    latent_frames = (frames - 1) // 4 + 1
    title = (f"MultiTalk DiT, {'tiny' if args.tiny else '14B'} at {width}x{height}, {frames} frames, 2 people, "
             "3 guidance passes")
    compare(title, ours, original, flops(config, latent_frames, height // 8, width // 8), device, dtype, args.repeats)


if __name__ == "__main__":
    main()
