"""AnyTalker DiT speed: talkstudio's formulation against the original's, measured in one run.

Ours: audio attention grouped by latent frame, both CFG passes in one batched forward.
Original formulation: a dense boolean temporal mask through SDPA, and two separate CFG passes.
Both run the same random weights (full 1.3B size by default) on the same inputs; the script
prints seconds per denoising step and per 81-frame chunk (40 steps), peak GPU memory, model-FLOP
utilisation, and the largest difference between the two outputs.

Run on a GPU:  python benchmarks/anytalker_speed.py            (832x480 -> 832x448, 81 frames)
Check on CPU:  python benchmarks/anytalker_speed.py --tiny     (a toy size, to test the script)
"""

from __future__ import annotations

import argparse
import time

import torch

import talkstudio.generators.anytalker.transformer as transformer
from talkstudio.generators.anytalker.transformer import AnyTalkerConfig, AnyTalkerTransformer, attend
from talkstudio.generators.wan import cast_for_inference

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16


def dense_audio_attention(q, k_face, v_face, k_audio, v_audio, grid):
    """The original's formulation: every query over all audio, with a dense boolean temporal mask."""
    frames, per_frame = grid[0], grid[1] * grid[2]
    video = k_audio.shape[1] // 32
    hears = torch.zeros(frames, video, dtype=torch.bool, device=q.device)
    hears[0] = True
    for t in range(1, frames):
        hears[t, (t - 1) * 4 + 1: t * 4 + 1] = True
    mask = hears.repeat_interleave(per_frame, 0).repeat_interleave(32, 1)
    mask = torch.nn.functional.pad(mask, (k_face.shape[1], 0), value=True)[None, None]
    return attend(q, torch.cat([k_face, k_audio], 1), torch.cat([v_face, v_audio], 1), mask)


def inputs(config, frames, height, width, identities, device, dtype):
    g = torch.Generator(device="cpu").manual_seed(0)
    latent_frames, lat_h, lat_w = (frames - 1) // 4 + 1, height // 8, width // 8

    def randn(*shape):
        return torch.randn(*shape, generator=g).to(device, dtype)

    tokens = latent_frames * (lat_h // 2) * (lat_w // 2)
    masks = [torch.zeros(2, tokens, device=device, dtype=dtype) for _ in range(identities)]
    for i, mask in enumerate(masks):
        mask[:, i::identities] = 1
    return (randn(2, config.in_dim, latent_frames, lat_h, lat_w), torch.tensor([500.0, 500.0], device=device),
            randn(2, min(64, config.text_len), config.text_dim), randn(2, 257, 1280),
            [randn(2, frames, 5, 12, 768) for _ in range(identities)], [randn(2, 257, 1280) for _ in range(identities)],
            masks)


def flops(config, latent_frames, lat_h, lat_w, frames, identities) -> float:
    """Matmul FLOPs of one forward of batch 2 (both CFG rows)."""
    d, L = config.dim, latent_frames * (lat_h // 2) * (lat_w // 2)
    audio_keys = 257 + 4 * 32
    block = (4 * L * d * d * 2 + 2 * 2 * L * L * d  # self-attention
             + L * d * d * 2 + 2 * config.text_len * d * d * 2 + 2 * 2 * L * config.text_len * d  # text
             + 2 * 257 * d * d * 2 + 2 * 2 * L * 257 * d + L * d * d * 2  # image, output
             + identities * (2 * (257 + frames * 32) * d * d * 2 + 2 * 2 * L * audio_keys * d)  # faces and audio
             + 2 * L * d * config.ffn_dim * 2)  # feed-forward
    return 2 * config.num_layers * block


def timed(step, device, repeats):
    step()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(repeats):
        out = step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / repeats
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    return out, seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a toy size, to check the script on a CPU")
    parser.add_argument("--identities", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    if args.tiny:
        config, frames, height, width = AnyTalkerConfig(dim=48, ffn_dim=64, num_heads=2, num_layers=2, text_dim=16,
                                                        text_len=8, freq_dim=32), 9, 32, 48
    else:
        config, frames, height, width = AnyTalkerConfig(), 81, 448, 832
    torch.manual_seed(0)
    model = cast_for_inference(AnyTalkerTransformer(config).to(device), dtype).eval()
    x, t, text, clip, audios, faces, masks = inputs(config, frames, height, width, args.identities, device, dtype)

    def ours():
        with torch.no_grad():
            return model(x, t, text, clip, audios, faces, masks)

    def original():
        saved = transformer.frame_audio_attention
        transformer.frame_audio_attention = dense_audio_attention
        try:
            with torch.no_grad():  # two separate passes, as the original runs CFG
                halves = [model(x[i:i + 1], t[i:i + 1], text[i:i + 1], clip[i:i + 1], [a[i:i + 1] for a in audios],
                                [f[i:i + 1] for f in faces], [m[i:i + 1] for m in masks]) for i in range(2)]
            return torch.cat(halves)
        finally:
            transformer.frame_audio_attention = saved

    latent_frames = (frames - 1) // 4 + 1
    work = flops(config, latent_frames, height // 8, width // 8, frames, args.identities)
    title = (f"AnyTalker DiT, {'tiny' if args.tiny else '1.3B'} at {width}x{height}, {frames} frames, "
             f"{args.identities} identities")
    compare(title, ours, original, work, device, dtype, args.repeats)


def compare(title: str, ours, original, work: float, device: str, dtype, repeats: int) -> None:
    """Time both formulations of one step and print the table: s/step, s/chunk, peak memory, MFU, difference."""
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    peak_tflops = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    rows = []
    for label, step in (("talkstudio", ours), ("original formulation", original)):
        out, seconds, memory = timed(step, device, repeats)
        mfu = work / seconds / (peak_tflops * 1e12) if peak_tflops else float("nan")
        rows.append((label, out, seconds, memory, mfu))
    print(f"{title}, {name}, {dtype}")
    print(f"{'':22s} {'s/step':>8s} {'s/chunk (40)':>13s} {'peak GiB':>9s} {'MFU':>6s}")
    for label, _, seconds, memory, mfu in rows:
        print(f"{label:22s} {seconds:8.3f} {seconds * 40:13.1f} {memory:9.1f} {mfu:6.1%}")
    difference = (rows[0][1].float() - rows[1][1].float()).abs().max().item()
    print(f"speed-up {rows[1][2] / rows[0][2]:.2f}x; largest output difference {difference:.2e}")


if __name__ == "__main__":
    main()
