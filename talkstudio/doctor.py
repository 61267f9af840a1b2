"""`talkstudio doctor`: what this machine can render with, and for what it cannot, why."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from talkstudio.generators.wan_pipeline import MODELS_ENV



@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def checks(models: Path | None = None) -> list[Check]:
    from talkstudio.audio_io import ffmpeg_exe
    from talkstudio.generators import GENERATORS
    from talkstudio.voices import engine_names, get_engine

    found = [Check("ffmpeg", True, ffmpeg_exe())]
    for name in engine_names():
        try:
            found.append(Check(f"voice engine {name}", True, get_engine(name).version()))
        except Exception as error:  # noqa: BLE001 - a plugin that fails to load is reported, not raised
            found.append(Check(f"voice engine {name}", False, f"cannot load: {error}"))
    found.append(Check("face detection", _installed("mediapipe"),
                       "mediapipe 0.10.21" if _installed("mediapipe") else "mediapipe missing: give face boxes by hand"))
    for name in GENERATORS:
        found.append(_backend(name, models))
    found += [_speech_detection(), _ray(), _burnable_scripts()]
    return found


def _burnable_scripts() -> Check:
    """Which scripts burned subtitles can be drawn in: those some font on this machine has."""
    from talkstudio.subtitles.fonts import burnable_scripts

    scripts = burnable_scripts()
    missing = [name for name, ok in scripts.items() if not ok]
    detail = "all of " + ", ".join(scripts) if not missing else (
        f"{', '.join(n for n, ok in scripts.items() if ok) or 'none'}; no font for {', '.join(missing)} "
        "(install one, e.g. fonts-noto-cjk, or set subtitles.font)")
    return Check("burned subtitles", not missing, detail)


def _speech_detection() -> Check:
    """`podcast` needs the Silero VAD model and onnxruntime."""
    from talkstudio.vad import VadUnavailable, model_path

    try:
        path = model_path()
    except VadUnavailable as error:
        return Check("podcast speech detection", False, str(error))
    if not _installed("onnxruntime"):
        return Check("podcast speech detection", False, "onnxruntime missing: pip install 'talkstudio[podcast]'")
    return Check("podcast speech detection", True, f"Silero VAD ({path.name}) on onnxruntime")


def _ray() -> Check:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return Check("batch on Ray", True, f"ray {version('ray')}")
    except PackageNotFoundError:
        return Check("batch on Ray", False, "ray missing: pip install 'talkstudio[ray]' (local workers need nothing)")


def _backend(name: str, models: Path | None) -> Check:
    from talkstudio.generators import GENERATORS

    info = GENERATORS[name]
    if name == "puppet":
        return Check("backend puppet", _installed("cv2"), "ready (CPU)" if _installed("cv2") else "opencv missing")
    if info.target is None:
        return Check(f"backend {name}", False, "not available in this version")
    problems = []
    if not _installed("torch"):
        extra = "bindyouravatar" if name == "bindyouravatar" else "anytalker"
        problems.append(f"torch missing: pip install 'talkstudio[{extra}]' (install torch first for your CUDA)")
    elif info.needs_gpu:
        import torch

        if not torch.cuda.is_available():
            problems.append("no CUDA GPU visible (it runs on the CPU only at toy sizes)")
    root = models or (Path(os.environ[MODELS_ENV]) if os.environ.get(MODELS_ENV) else None)
    files = None
    if root is None:
        problems.append(f"no model folder: pass --models DIR or set {MODELS_ENV}")
    else:
        from talkstudio.errors import InputError

        try:
            files = _locate(name, root)
        except InputError as error:
            problems.append(error.problems[0].message)
    licence = f". Licence: {LICENCES[name]}" if name in LICENCES else ""
    if problems:
        return Check(f"backend {name}", False, "; ".join(problems) + licence)
    return Check(f"backend {name}", True, f"ready with the models in {root}{_notes(name, files)}{licence}")


LICENCES = {"bindyouravatar": "its weights derive from CogVideoX-5B-I2V and fall under the CogVideoX licence "
                              "(THUDM/CogVideoX-5b-I2V); its code states no licence; InsightFace's antelopev2 "
                              "models are for non-commercial research only"}


def _notes(name: str, files) -> str:
    """What a ready backend will do without an optional part (`files`: what its locate found)."""
    if name != "bindyouravatar":
        return ""
    from talkstudio.generators.bindyouravatar.two_stage import sam2_missing

    notes = [] if files.parsing else ["no face_encoder/parsing_bisenet.pth: faces cut out with mediapipe's mask"]
    if files.sam2 is None or sam2_missing(files.sam2):
        notes.append("one pass per window (two-stage routing needs the sam2 package and sam2/sam2.1_hiera_large.pt)")
    else:
        notes.append("two-stage routing with SAM2.1")
    return " (" + "; ".join(notes) + ")"


def _locate(name: str, root: Path):
    """The backend's files under `root` (an InputError saying what is missing)."""
    if name == "bindyouravatar":
        from talkstudio.generators.bindyouravatar.models import locate

        return locate(root)
    if name == "anytalker":
        from talkstudio.generators.anytalker.models import locate

        return locate(root)
    from talkstudio.generators.multitalk.models import locate

    return locate(root, name)


def ray_exposure(address: str) -> list[Check]:
    """What the Ray cluster at `address` exposes: who can reach its nodes, and whether it asks for a token.

    Ray runs any code a client sends it, so a cluster reachable from a network without token
    authentication lets anyone on that network run programs on every node.
    """
    from talkstudio.batch.runners import RayPool

    pool = RayPool(address, 1)
    try:
        nodes = sorted({node["NodeManagerAddress"] for node in pool.ray.nodes() if node["Alive"]})
        dashboard = _dashboard_url()
    finally:
        pool.close()
    token = _token_authentication()
    found = [Check(f"ray node {node}", _reach(node) == "this machine only" or token,
                   f"reachable from {_reach(node)}") for node in nodes]
    found.append(Check("ray authentication", token, "token required (RAY_AUTH_MODE=token)" if token else
                       "none: anyone who reaches a node can run code on it; enable token authentication "
                       "(ray get-auth-token --generate, RAY_AUTH_MODE=token on every node) or keep it on loopback"))
    if dashboard:
        found.append(Check("ray dashboard", token or _reach(dashboard) == "this machine only",
                           f"{dashboard}: shows jobs and logs, and takes job submissions"))
    return found


def _reach(host: str) -> str:
    import ipaddress

    bare = host.split("://")[-1].split("/")[0]
    if bare.count(":") == 1 or bare.startswith("["):  # HOST:PORT or [IPv6]:PORT
        bare = bare.rsplit(":", 1)[0].strip("[]")
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        return f"wherever '{host}' resolves"
    if address.is_loopback:
        return "this machine only"
    return "the local network" if address.is_private else "the internet"


def _dashboard_url() -> str:
    from ray._private import worker

    return getattr(worker.global_worker.node, "webui_url", "") or ""


def _token_authentication() -> bool:
    from ray._raylet import AuthenticationMode, get_authentication_mode

    return get_authentication_mode() == AuthenticationMode.TOKEN
