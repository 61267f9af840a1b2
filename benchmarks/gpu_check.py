"""One-shot check of the generative backends on a GPU: one window each through `talkstudio render`.

For each of AnyTalker-1.3B (2 steps, an 81-frame window at 832x480), MultiTalk-14B (1 step, bf16,
81 frames at 832x480) and Bind-Your-Avatar (CogVideoX-5B-I2V with its face, router and audio modules,
1 step, bf16, a 49-frame window at its 720x480) the script renders one window from model folders in
the official layout and prints one table: build and load time, seconds per denoising step (one
transformer forward, both CFG rows) and per window (the backend's generate: conditions, the steps,
the VAE decode), peak GPU memory, model-FLOP utilisation of a step (the speed benchmarks' FLOP
counts), the DiT's speed-up over the original formulation (the speed benchmarks, one repeat;
Bind-Your-Avatar has no separate original formulation, so "-"), and whether the frames are finite
and vary.

Without --models the folders are made here with random weights: the DiTs at full size (1.3B, 14B and
Bind-Your-Avatar's 5.6B core with its 2.2B audio module, 0.6B of face modules, 0.2B router and rank-128
LoRA, under the checkpoints' key names and in their file formats, so the real loaders read them
strictly; only the text embedding's input is as narrow as the T5), the encoders (T5, CLIP, VAE,
wav2vec, EVA-CLIP, ArcFace) narrow, which is what a DiT-bound check needs. Bind-Your-Avatar's facial
extractor is the released one but for its two input mappings, which take the narrow EVA-CLIP's levels
and identity embedding (the extractor runs once per window, not per step); its VAE is narrow with
CogVideoX's 16 latent channels. The full-size weights are made on the GPU in bf16 and written (about
3 GB AnyTalker, 28 GB MultiTalk, 17.4 GB Bind-Your-Avatar; each backend's folder is deleted after its
check); Bind-Your-Avatar's part of the run (write, load, window) is about 1-1.5 minutes. With --models
DIR the downloaded folders are used as they are. --tiny runs everything at a toy size on the CPU (CI
runs it, so the script cannot rot; about a minute on two cores).

    python benchmarks/gpu_check.py                 # on an H100/H200: about 6-8 minutes
    python benchmarks/gpu_check.py --models DIR    # the real weights
    python benchmarks/gpu_check.py --tiny          # the CPU, a toy size
    python benchmarks/gpu_check.py --only anytalker --size 128x128 --frames 9 --steps 1
                                                   # the full-size 1.3B DiT on a CPU, one small window
    python benchmarks/gpu_check.py --only bindyouravatar --layers 2 --frames 9
                                                   # Bind-Your-Avatar's full widths, 2 blocks, on a CPU
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import re
import runpy
import shutil
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

BACKENDS = {  # name: (steps, fps, frames at full size, frames at the toy size, the speed benchmark)
    "anytalker": (2, 24, 81, 9, "anytalker_speed.py"),
    "multitalk": (1, 25, 81, 29, "multitalk_speed.py"),  # a window must be longer than its 25 carried frames
    # no original formulation to compare with (bindyouravatar_speed.py times the DiT alone): speed-up "-"
    "bindyouravatar": (1, 25, 49, 9, None),
}
FULL = {"size": None, "anytalker": {"dim": 1536, "ffn_dim": 8960, "num_heads": 12, "num_layers": 30},
        "multitalk": {"dim": 5120, "ffn_dim": 13824, "num_heads": 40, "num_layers": 40},
        "bindyouravatar": {"num_layers": 42}}  # the rest: bindyouravatar_speed.COGVIDEOX_5B_I2V
SIZES = {"anytalker": (832, 480), "multitalk": (832, 480), "bindyouravatar": (720, 480)}  # the video's, by default
TINY_SIZE = (96, 64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a toy size on the CPU (checks the script)")
    parser.add_argument("--models", type=Path, help="downloaded model folders (default: random weights made here)")
    parser.add_argument("--only", choices=list(BACKENDS), action="append", help="check only this backend")
    parser.add_argument("--budget", type=float, default=480, help="seconds; stages that would start later are skipped")
    parser.add_argument("--size", default=None, help="video size WxH (default 832x480; Bind-Your-Avatar 720x480)")
    parser.add_argument("--frames", type=int, default=None,
                        help="frames of the window (default 81; Bind-Your-Avatar 49)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: 2 AnyTalker, else 1)")
    parser.add_argument("--layers", type=int, default=None,
                        help="DiT blocks of the random full-width models (default: the full count; fewer: a CPU smoke)")
    args = parser.parse_args()
    if args.size:
        FULL["size"] = tuple(int(n) for n in args.size.lower().split("x"))
    if args.layers:
        for name in BACKENDS:
            FULL[name]["num_layers"] = args.layers
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        for name in args.only or list(BACKENDS):
            if time.perf_counter() - started > args.budget:
                rows.append({"backend": name, "note": "skipped: over the time budget"})
                continue
            rows.append(check(name, Path(work), args.tiny, args.models, args.frames, args.steps))
            shutil.rmtree(Path(work) / f"{name}-models", ignore_errors=True)  # 28 GB + 17 GB would crowd a 64 GB disk
    print_table(rows, time.perf_counter() - started)
    if any(row.get("ok") is False for row in rows):
        sys.exit(1)


def check(name: str, work: Path, tiny: bool, models: Path | None, frames: int | None = None,
          steps: int | None = None) -> dict:
    """Render one window with the backend and measure it."""
    import torch

    from talkstudio import generators

    default_steps, fps, full_frames, tiny_frames, benchmark = BACKENDS[name]
    frames = frames or (tiny_frames if tiny else full_frames)
    steps = steps or default_steps
    size = TINY_SIZE if tiny else FULL["size"] or SIZES[name]
    clock = time.perf_counter()
    root = models or build_folders(name, work / f"{name}-models", tiny)
    built = time.perf_counter() - clock
    script = write_script(work / name, name, frames, fps, size, steps)
    cuda = torch.cuda.is_available() and not tiny
    timing = Timing(cuda)
    with narrow_encoders(name, models is None, tiny), timing.watch(name):
        generators._instances.clear()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        from cli import main as cli

        code = cli(["render", str(script), "--models", str(root), "--frame-num", str(frames), "-o",
                    str(work / name / "out.mp4"), "--cache", str(work / name / "cache"), "--no-cache", "--quiet"])
    generators._instances.clear()
    frames_ok = code == 0 and finite_and_varying(work / name / "out.mp4", size)
    speed = speed_up(benchmark, tiny) if benchmark and (tiny or cuda) else math.nan  # full size on a CPU: hours
    return {"backend": name, "ok": code == 0 and frames_ok and timing.finite, "build": built,
            "load": timing.load, "step": timing.step, "window": timing.window,
            "peak": torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan"),
            "mfu": mfu(name, timing.step, frames, size, cuda), "speedup": speed,
            "note": "" if code == 0 else f"render exited {code}"}


class Timing:
    """Load, step and window times, read by wrapping the backend's own functions."""

    def __init__(self, cuda: bool):
        self.cuda, self.load, self.window, self.steps, self.finite = cuda, math.nan, math.nan, [], True

    @property
    def step(self) -> float:
        return float(np.median(self.steps)) if self.steps else math.nan

    def _sync(self):
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    @contextlib.contextmanager
    def watch(self, name: str):
        """Wraps the backend's create, its pipeline's generate (one window) and its DiT forward (one step):
        the model class's forward, or for Bind-Your-Avatar the module function `transformer.forward` that its
        pipeline imported by name (so `pipeline.forward` is what is replaced)."""
        import importlib

        module = importlib.import_module(f"talkstudio.generators.{name}")
        pipeline = importlib.import_module(f"talkstudio.generators.{name}.pipeline")
        if name == "bindyouravatar":
            model, attribute = pipeline, "forward"
        else:
            transformer = importlib.import_module(f"talkstudio.generators.{name}.transformer")
            model, attribute = getattr(transformer, {"anytalker": "AnyTalkerTransformer",
                                                     "multitalk": "MultiTalkTransformer"}[name]), "forward"
        create = module.create
        generate = pipeline.generate
        forward = getattr(model, attribute)

        def timed_create(*args, **kwargs):
            begun = time.perf_counter()
            made = create(*args, **kwargs)
            self.load = time.perf_counter() - begun
            return made

        def timed_generate(*args, **kwargs):
            self._sync()
            begun = time.perf_counter()
            made = generate(*args, **kwargs)
            self._sync()
            self.window = time.perf_counter() - begun
            return made

        def timed_forward(model_self, *args, **kwargs):  # a method's self, or the function's model argument
            self._sync()
            begun = time.perf_counter()
            out = forward(model_self, *args, **kwargs)
            self._sync()
            self.steps.append(time.perf_counter() - begun)
            self.finite = self.finite and bool(out.isfinite().all())
            return out

        module.create, pipeline.generate = timed_create, timed_generate
        setattr(model, attribute, timed_forward)
        try:
            yield
        finally:
            module.create, pipeline.generate = create, generate
            setattr(model, attribute, forward)


@contextlib.contextmanager
def narrow_encoders(name: str, wanted: bool, tiny: bool):
    """Point the encoders' full-size configurations at the narrow ones the folders were made with; for
    Bind-Your-Avatar also the module sizes (tiny, or the released ones with the facial extractor's inputs as
    wide as the narrow EVA-CLIP and ArcFace), and at the toy size its working size."""
    if not wanted:
        yield
        return
    import pytest

    patch = pytest.MonkeyPatch()
    if name == "bindyouravatar":
        from bindyouravatar_layout import tiny_configs

        from talkstudio.generators import bindyouravatar

        tiny_configs(patch)
        if tiny:
            patch.setattr(bindyouravatar, "MODEL_SIZE", TINY_SIZE)  # the tiny VAE and grid; released: 720x480
        else:
            from talkstudio.generators.bindyouravatar import transformer

            patch.setattr(transformer, "RELEASED", _bindyouravatar_additions())
    else:
        from anytalker_layout import tiny_configs

        tiny_configs(patch)
    try:
        yield
    finally:
        patch.undo()


def build_folders(name: str, root: Path, tiny: bool) -> Path:
    """The official layout with random weights: the tests' tiny folders, with a full-size DiT unless tiny."""
    from anytalker_layout import build_tiny_layout
    from bindyouravatar_layout import build_tiny_bindyouravatar
    from multitalk_layout import build_tiny_multitalk

    root.mkdir(parents=True)
    {"anytalker": build_tiny_layout, "multitalk": build_tiny_multitalk,
     "bindyouravatar": build_tiny_bindyouravatar}[name](root)
    if not tiny:
        {"anytalker": write_full_anytalker, "multitalk": write_full_multitalk,
         "bindyouravatar": write_full_bindyouravatar}[name](root)
    return root


def _random_model(cls, config):
    """A full-size model with random weights, made on the GPU in bf16 (14B in fp32 would not fit the host)."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = cls(config).to(torch.bfloat16)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.02)
    return model


def _text_width() -> int:
    """The narrow T5's width: the full-size DiT's text embedding takes it in (its only narrow part)."""
    import torch

    from anytalker_layout import FIXTURES

    return torch.load(FIXTURES / "wan_t5_tiny.pt", weights_only=True)["config"]["dim"]


def write_full_anytalker(root: Path) -> None:
    import torch

    from talkstudio.generators.anytalker.transformer import AnyTalkerConfig, AnyTalkerTransformer

    sizes = {**FULL["anytalker"], "text_dim": _text_width()}
    (root / "AnyTalker" / "config_af2v_1_3B.json").write_text(json.dumps({**sizes, "model_type": "a2v_af",
                                                                          "in_dim": 36}))
    model = _random_model(AnyTalkerTransformer, AnyTalkerConfig(**sizes))
    torch.save({"model": {k: v.cpu() for k, v in model.state_dict().items()}}, root / "AnyTalker" / "1_3B-single-v1.pth")


def write_full_multitalk(root: Path) -> None:
    from safetensors.torch import save_file

    from multitalk_layout import AUDIO_PARTS, WAN
    from talkstudio.generators.multitalk.transformer import MultiTalkConfig, MultiTalkTransformer

    wan = root / WAN
    for old in wan.glob("diffusion_pytorch_model-*.safetensors"):
        old.unlink()
    sizes = {**FULL["multitalk"], "text_dim": _text_width()}
    (wan / "config.json").write_text(json.dumps({"_class_name": "WanModel", "model_type": "i2v", "in_dim": 36,
                                                 "out_dim": 16, "eps": 1e-06, "text_len": 512, "freq_dim": 256,
                                                 **sizes}))
    model = _random_model(MultiTalkTransformer, MultiTalkConfig(**sizes))
    state = {k: v.contiguous().cpu() for k, v in model.state_dict().items()}
    del model
    audio = {k: v for k, v in state.items() if any(part in k or k.startswith(part) for part in AUDIO_PARTS)}
    video = sorted(k for k in state if k not in audio)
    shards = [video[i::7] for i in range(7)]
    for index, keys in enumerate(shards, start=1):
        save_file({k: state[k] for k in keys}, wan / f"diffusion_pytorch_model-{index:05d}-of-00007.safetensors")
    save_file(audio, root / "MeiGen-MultiTalk" / "multitalk.safetensors")


def _bindyouravatar_additions():
    """The released module sizes, the facial extractor's two input mappings as wide as the narrow encoders."""
    from bindyouravatar_layout import ARCFACE_FEATURES, EVA
    from bindyouravatar_speed import released_additions

    return released_additions(vit_dim=EVA["width"], id_dim=ARCFACE_FEATURES + EVA["embed_dim"])


def write_full_bindyouravatar(root: Path, lora_rank: int = 128) -> None:
    """Replace the tiny layout's DiT files with full-size random ones in the released formats:
    transformer/ (CogVideoX-5B-I2V's config and core, 32 input channels, in three safetensors shards),
    audio_module/audio_modules.pt, face_module/face_modules.pt, router/router_modules.pt (torch.save'd state
    dicts), lora_weight/pytorch_lora_weights.safetensors (rank 128 on every block's attn1.to_q / to_k);
    and the VAE with CogVideoX's 16 latent channels (still narrow). About 17.4 GB, made on the GPU in bf16."""
    import torch
    from diffusers import AutoencoderKLCogVideoX
    from safetensors.torch import save_file

    from bindyouravatar_layout import FOLDER, VAE
    from bindyouravatar_speed import COGVIDEOX_5B_I2V, random_model

    folder = root / FOLDER
    text_width = json.loads((folder / "text_encoder" / "config.json").read_text())["d_model"]  # the narrow T5's
    core = {**COGVIDEOX_5B_I2V, **FULL["bindyouravatar"], "text_embed_dim": text_width}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = random_model(core, _bindyouravatar_additions(), device)
    state = {k: v.contiguous().cpu() for k, v in model.state_dict().items()}
    del model
    state["patch_embed.proj.weight"] = state["patch_embed.proj.weight"][:, :core["in_channels"]].contiguous()

    def part(prefix: str) -> dict:
        return {k[len(prefix):]: state.pop(k) for k in [k for k in state if k.startswith(prefix)]}

    torch.save(part("audio_model."), folder / "audio_module" / "audio_modules.pt")
    torch.save(part("router."), folder / "router" / "router_modules.pt")
    layers = core["num_layers"] // 2
    torch.save({"local_facial_extractor": part("local_facial_extractor."),
                "perceiver_cross_attention": [part(f"perceiver_cross_attention.{i}.") for i in range(layers)]},
               folder / "face_module" / "face_modules.pt")
    transformer = folder / "transformer"
    for old in transformer.glob("diffusion_pytorch_model*.safetensors"):
        old.unlink()
    (transformer / "config.json").write_text(json.dumps(core))
    keys = sorted(state)
    for index in range(3):
        save_file({k: state[k] for k in keys[index::3]},
                  transformer / f"diffusion_pytorch_model-{index + 1:05d}-of-00003.safetensors")
    state.clear()
    inner = core["num_attention_heads"] * core["attention_head_dim"]
    lora = {}
    with torch.device(device):
        for block in range(core["num_layers"]):
            for target in ("to_q", "to_k"):
                stem = f"transformer.transformer_blocks.{block}.attn1.{target}"
                lora[f"{stem}.lora_A.weight"] = torch.randn(lora_rank, inner, dtype=torch.bfloat16) * 0.01
                lora[f"{stem}.lora_B.weight"] = torch.randn(inner, lora_rank, dtype=torch.bfloat16) * 0.01
    save_file({k: v.cpu() for k, v in lora.items()}, folder / "lora_weight" / "pytorch_lora_weights.safetensors")
    shutil.rmtree(folder / "vae")
    torch.manual_seed(12)
    AutoencoderKLCogVideoX(**{**VAE, "latent_channels": core["out_channels"]}).save_pretrained(folder / "vae")


def write_script(folder: Path, backend: str, frames: int, fps: int, size: tuple[int, int], steps: int) -> Path:
    """A one-scene screenplay whose recorded line makes the scene exactly one window long."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "casts" / "maya.png", folder / "ana.png")
    shutil.copy(ROOT / "casts" / "theo.png", folder / "ben.png")
    seconds = frames / fps
    for name, pitch in (("ana", 190.0), ("ben", 120.0)):
        write_voice(folder / f"{name}.wav", seconds / 2 - 0.05, pitch)
    width, height = size
    text = (f"video: {{size: {width}x{height}, backend: {backend}, options: {{steps: {steps}}}}}\n"
            "timing: {lead_in: 0, gap: 0, tail: 0}\n"
            "cast:\n  ana: {image: ana.png, voice: ava}\n  ben: {image: ben.png, voice: dan}\n"
            "scenes:\n  - prompt: two people talk\n    lines:\n"
            "      - {speaker: ana, text: Hello there, audio: ana.wav}\n"
            "      - {speaker: ben, text: Hi, audio: ben.wav}\n")
    script = folder / "check.yaml"
    script.write_text(text)
    return script


def write_voice(path: Path, seconds: float, pitch: float, rate: int = 16000) -> None:
    """A voiced sound with syllable-rate loudness changes: something for the audio attention to follow."""
    t = np.arange(int(seconds * rate)) / rate
    signal = 0.3 * np.sin(2 * np.pi * pitch * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((signal * 32767).astype("<i2").tobytes())


def finite_and_varying(video: Path, size: tuple[int, int]) -> bool:
    from talkstudio.assemble import read_frames

    frames = np.stack(list(read_frames(video, size))).astype(np.float32)
    return bool(len(frames) > 1 and frames.std() > 1.0 and np.abs(np.diff(frames, axis=0)).mean() > 0.0)


def mfu(name: str, step: float, frames: int, size: tuple[int, int], cuda: bool) -> float:
    """Model-FLOP utilisation of one measured forward, from the speed benchmarks' FLOP counts."""
    if not cuda or not math.isfinite(step):
        return math.nan
    import torch

    from anytalker_speed import PEAK_TFLOPS

    peak = next((v for k, v in PEAK_TFLOPS.items() if k in torch.cuda.get_device_name()), None)
    if peak is None:
        return math.nan
    latent_frames = (frames - 1) // 4 + 1
    lat_h, lat_w = size[1] // 8 // 2 * 2, size[0] // 8
    if name == "bindyouravatar":  # the window is always the model's 720x480, whatever the video's size
        from bindyouravatar_speed import COGVIDEOX_5B_I2V, flops, released_additions
        from talkstudio.generators.bindyouravatar import MODEL_SIZE
        from talkstudio.generators.bindyouravatar.transformer import make_transformer

        core = {**COGVIDEOX_5B_I2V, **FULL["bindyouravatar"], "in_channels": 3 * COGVIDEOX_5B_I2V["out_channels"]}
        with torch.device("meta"):
            model = make_transformer(core, released_additions())
        return flops(model, latent_frames, MODEL_SIZE[1] // 8, MODEL_SIZE[0] // 8) / step / (peak * 1e12)
    if name == "anytalker":
        from anytalker_speed import flops
        from talkstudio.generators.anytalker.transformer import AnyTalkerConfig

        work = flops(AnyTalkerConfig(**FULL["anytalker"]), latent_frames, lat_h, lat_w, frames, 2)
    else:
        from multitalk_speed import flops
        from talkstudio.generators.multitalk.transformer import MultiTalkConfig

        work = flops(MultiTalkConfig(**FULL["multitalk"]), latent_frames, lat_h, lat_w)
    return work / step / (peak * 1e12)


def speed_up(benchmark: str, tiny: bool) -> float:
    """The DiT's speed-up over the original formulation, from the speed benchmark (one repeat)."""
    printed = io.StringIO()
    saved = sys.argv
    sys.argv = [benchmark, "--repeats", "1"] + (["--tiny"] if tiny else [])
    try:
        with contextlib.redirect_stdout(printed):
            runpy.run_path(str(ROOT / "benchmarks" / benchmark), run_name="__main__")
    finally:
        sys.argv = saved
    found = re.search(r"speed-up ([\d.]+)x", printed.getvalue())
    return float(found[1]) if found else math.nan


def print_table(rows: list[dict], seconds: float) -> None:
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"GPU check on {device}, {seconds:.0f} s in all")
    print(f"{'backend':14s} {'ok':>3s} {'build s':>8s} {'load s':>7s} {'s/step':>7s} {'s/window':>9s} "
          f"{'peak GiB':>9s} {'MFU':>6s} {'speed-up':>9s}  note")
    for row in rows:
        if "load" not in row:
            print(f"{row['backend']:14s} {'-':>3s}  {row['note']}")
            continue
        print(f"{row['backend']:14s} {'yes' if row['ok'] else 'NO':>3s} {_shown(row['build'], '8.1f')} "
              f"{_shown(row['load'], '7.1f')} {_shown(row['step'], '7.3f')} {_shown(row['window'], '9.1f')} "
              f"{_shown(row['peak'], '9.1f')} {_shown(row['mfu'], '6.1%')} {_shown(row['speedup'], '8.2f')}"
              f"{'x' if math.isfinite(row['speedup']) else ' '}  {row['note']}")


def _shown(value: float, spec: str) -> str:
    width = int(re.match(r"\d+", spec)[0])
    return format(value, spec) if math.isfinite(value) else "-".rjust(width)


if __name__ == "__main__":
    main()
