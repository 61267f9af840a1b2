"""The Bind-Your-Avatar model folder, exactly as it downloads, and loading the DiT from it strictly.

    DIR/wav2vec2-base-960h/   hf download facebook/wav2vec2-base-960h (shared with AnyTalker): the audio rows
    DIR/Bindyouravatar/ (hf download hyb1124/Bindyouravatar --local-dir DIR/Bindyouravatar; the original's
                         `pretrained/`: the CogVideoX-5B-I2V pipeline folder plus)
        transformer/   config.json + diffusion_pytorch_model*.safetensors   CogVideoX core (diffusers names)
        vae/ text_encoder/ tokenizer/ scheduler/                              CogVideoX-5B-I2V's
        audio_module/audio_modules.pt                                          AudioAwareModel state dict
        face_module/face_modules.pt          {local_facial_extractor: ..., perceiver_cross_attention: [...]}
        router/router_modules.pt                                               the embedding router
        lora_weight/pytorch_lora_weights.safetensors    rank-128 LoRA on every block's attn1.to_q / to_k
        face_encoder/   EVA02_CLIP_L_336_psz14_s6B.pt, models/antelopev2/glintr100.onnx (InsightFace),
                        parsing_bisenet.pth (facexlib; optional)              the identity encoders
        sam2/sam2.1_hiera_large.pt                                              optional: two-stage routing

The original loads every part with strict=False and prints what did not fit; here any missing,
unexpected or misshapen tensor is an error that names it. Two things the original does are kept:
a core whose patch embedding takes 32 input channels (CogVideoX-5B-I2V's) gets zero weights for the
16 channels of the inpainting frame, and the LoRA acts at full strength (its `fuse_lora(1/128)` call
changes nothing on the PEFT-wrapped model, so the released videos were made with B @ A added whole).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from talkstudio.errors import InputError, Problem
from talkstudio.generators.folders import check_complete

FOLDER = "Bindyouravatar"
DOWNLOADS = {
    "bindyouravatar": "hf download hyb1124/Bindyouravatar --local-dir DIR/Bindyouravatar",
    "cogvideox": "hf download THUDM/CogVideoX-5b-I2V --local-dir DIR/CogVideoX-5b-I2V (then copy its vae/, "
                 "text_encoder/, tokenizer/ and scheduler/ folders into DIR/Bindyouravatar)",
    "wav2vec": "hf download facebook/wav2vec2-base-960h --local-dir DIR/wav2vec2-base-960h",
    "sam2": "hf download facebook/sam2.1-hiera-large sam2.1_hiera_large.pt --local-dir DIR/Bindyouravatar/sam2",
}
LORA_TARGETS = ("attn1.to_q", "attn1.to_k")


@dataclass(frozen=True)
class BindYourAvatarFiles:
    root: Path
    wav2vec: Path
    transformer: Path
    vae: Path
    text_encoder: Path
    tokenizer: Path
    scheduler: Path
    audio: Path
    face: Path
    router: Path
    lora: Path
    eva_clip: Path
    antelope: Path
    parsing: Path | None  # facexlib's BiSeNet face parser, when downloaded
    sam2: Path | None  # two-stage routing, when downloaded


def locate(root: Path) -> BindYourAvatarFiles:
    """Every file the backend needs under `root`; one InputError listing all that is missing and how to get it."""
    top = Path(root)
    root = top / FOLDER
    wanted = {
        "wav2vec": (top / "wav2vec2-base-960h" / "config.json", "wav2vec"),
        "transformer": (root / "transformer" / "config.json", "bindyouravatar"),
        "vae": (root / "vae" / "config.json", "cogvideox"),
        "text_encoder": (root / "text_encoder" / "config.json", "cogvideox"),
        "tokenizer": (root / "tokenizer", "cogvideox"),
        "scheduler": (root / "scheduler" / "scheduler_config.json", "cogvideox"),
        "audio": (root / "audio_module" / "audio_modules.pt", "bindyouravatar"),
        "face": (root / "face_module" / "face_modules.pt", "bindyouravatar"),
        "router": (root / "router" / "router_modules.pt", "bindyouravatar"),
        "lora": (root / "lora_weight" / "pytorch_lora_weights.safetensors", "bindyouravatar"),
        "eva_clip": (root / "face_encoder" / "EVA02_CLIP_L_336_psz14_s6B.pt", "bindyouravatar"),
        "antelope": (root / "face_encoder" / "models" / "antelopev2" / "glintr100.onnx", "bindyouravatar"),
    }
    missing = [(path, source) for path, source in wanted.values() if not path.exists()]
    if (root / "transformer").is_dir() and not _shards(root / "transformer"):
        missing.append((root / "transformer" / "diffusion_pytorch_model.safetensors", "bindyouravatar"))
    check_complete("bindyouravatar", top, missing, DOWNLOADS)
    sam2 = root / "sam2" / "sam2.1_hiera_large.pt"
    # facexlib fetches its face parser on first use, so a download may lack it: a mediapipe mask stands in
    parsing = root / "face_encoder" / "parsing_bisenet.pth"
    paths = {name: path.parent if path.name in ("config.json", "scheduler_config.json") else path
             for name, (path, _) in wanted.items()}
    return BindYourAvatarFiles(root=top, sam2=sam2 if sam2.exists() else None,
                               parsing=parsing if parsing.exists() else None, **paths)


def _shards(folder: Path) -> list[Path]:
    return sorted(folder.glob("diffusion_pytorch_model*.safetensors"))


def load_transformer(files: BindYourAvatarFiles, additions=None, dtype=None):
    """The DiT with every released part in place, on the CPU; InputError naming any tensor that does not fit."""
    import torch
    from safetensors.torch import load_file

    from talkstudio.generators.bindyouravatar import transformer as dit

    core = json.loads((files.transformer / "config.json").read_text())
    core["in_channels"] = 3 * core.get("out_channels", 16)  # noise, first frame, inpainting frame
    with torch.device("meta"):
        model = dit.make_transformer(core, additions or dit.RELEASED)
    state = {}
    for shard in _shards(files.transformer):
        state.update(load_file(shard))
    state = _widen_patch_embedding(state, model)
    faces = torch.load(files.face, map_location="cpu", weights_only=True, mmap=True)
    state.update(_prefixed("local_facial_extractor.", faces["local_facial_extractor"]))
    for layer, part in enumerate(faces["perceiver_cross_attention"]):
        state.update(_prefixed(f"perceiver_cross_attention.{layer}.", part))
    state.update(_prefixed("router.", torch.load(files.router, map_location="cpu", weights_only=True, mmap=True)))
    state.update(_prefixed("audio_model.", torch.load(files.audio, map_location="cpu", weights_only=True, mmap=True)))
    _check_keys(model, state, files)
    model.load_state_dict(state, strict=True, assign=True)
    merge_lora(model, load_file(files.lora), files.lora)
    if dtype is not None:
        model.to(dtype)
    return model.eval()


def _prefixed(prefix: str, state: dict) -> dict:
    return {prefix + key: value for key, value in state.items()}


def _widen_patch_embedding(state: dict, model) -> dict:
    """A 32-channel core (CogVideoX-5B-I2V's) gets zeros for the inpainting frame's channels, as the original does."""
    import torch

    key = "patch_embed.proj.weight"
    wanted = model.state_dict()[key].shape
    if key in state and state[key].shape[1] < wanted[1]:
        weight = state[key]
        extra = torch.zeros(weight.shape[0], wanted[1] - weight.shape[1], *weight.shape[2:], dtype=weight.dtype)
        state[key] = torch.cat([weight, extra], dim=1)
    return state


def _check_keys(model, state: dict, files: BindYourAvatarFiles) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshapen = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or misshapen:
        parts = [f"{label}: {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''} ({len(keys)})"
                 for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshapen)) if keys]
        raise InputError(Problem(f"the bindyouravatar weights under {files.root} do not fit the model; " + "; ".join(parts),
                                 hint="download the folder again: " + DOWNLOADS["bindyouravatar"].replace("DIR", str(files.root))))


def merge_lora(model, lora: dict, path: Path) -> None:
    """W += B @ A for every block's attn1.to_q and to_k (rank r, alpha r: scale 1)."""
    import torch

    pairs = {}
    for key, value in lora.items():
        name = key.replace("transformer.module.", "transformer.").removeprefix("transformer.")
        for part in ("lora_A", "lora_B"):
            if f".{part}." in name:
                pairs.setdefault(name.split(f".{part}.")[0], {})[part] = value
                break
        else:
            raise InputError(Problem(f"{path}: unexpected LoRA tensor {key}", hint="use the released LoRA file"))
    modules = dict(model.named_modules())
    targets = sorted(name for name in modules if name.endswith(LORA_TARGETS) and name.startswith("transformer_blocks."))
    wrong = sorted(set(pairs) ^ set(targets)) + sorted(n for n, p in pairs.items() if set(p) != {"lora_A", "lora_B"})
    if wrong:
        raise InputError(Problem(f"{path}: the LoRA does not cover exactly the blocks' attn1.to_q/to_k; differs at "
                                 + ", ".join(wrong[:6]), hint="use the released LoRA file"))
    with torch.no_grad():
        for name, pair in pairs.items():
            weight = modules[name].weight
            weight += (pair["lora_B"].float() @ pair["lora_A"].float()).to(weight.dtype)
