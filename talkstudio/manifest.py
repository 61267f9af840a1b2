"""Up-to-date checks for an output folder.

After a successful run, a manifest beside the outputs records what produced
them: the screenplay's bytes, every file it refers to, the version of
talkstudio, the identity of the voice engines used, and the size and mtime of
each output. A later run whose inputs all match, and whose outputs are untouched,
has nothing to do. The check reads only these files, so it costs milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path

from talkstudio import __version__
from talkstudio.cache import atomic_write, file_digest
from talkstudio.voices import BUILTIN_ENGINES, ENTRY_POINT_GROUP


def _engine_identity(engines: list[str]) -> dict[str, object]:
    """What identifies each installed voice engine, cheaply (no engine is loaded)."""
    identity: dict[str, object] = {}
    for name in engines:
        if name in BUILTIN_ENGINES:
            import espeakng_loader

            library = Path(espeakng_loader.get_library_path()).resolve()
            identity[name] = [str(library), library.stat().st_size, library.stat().st_mtime_ns]
        else:
            from importlib.metadata import entry_points

            found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP, name=name)]
            identity[name] = [found[0].value, found[0].dist.version if found[0].dist else None] if found else None
    return identity


def _fingerprint(script: Path, inputs: list[str], engines: list[str], settings: dict | None) -> dict:
    return {
        "talkstudio": __version__,
        "settings": settings or {},
        "engines": _engine_identity(engines),
        "script": [str(Path(script).resolve()), file_digest(script)],
        "inputs": {p: file_digest(Path(p)) if Path(p).exists() else None for p in sorted(set(inputs))},
    }


def _stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def record(out_dir: Path, job: str, script: Path, inputs: list[Path], engines: list[str], outputs: list[Path],
           settings: dict | None = None) -> None:
    """Remember what made `outputs` (paths anywhere) from `script`, `inputs` and `settings`."""
    manifest = _fingerprint(script, [str(p) for p in inputs], sorted(set(engines)), settings)
    manifest["outputs"] = {str(Path(p).resolve()): _stamp(p) for p in outputs}
    with atomic_write(Path(out_dir) / f".talkstudio-{job}.json", "w") as f:
        json.dump(manifest, f, indent=1)


def up_to_date(out_dir: Path, job: str, script: Path, settings: dict | None = None) -> bool:
    """True when the outputs of `job` recorded in `out_dir` came from exactly these inputs and are untouched."""
    try:
        manifest = json.loads((Path(out_dir) / f".talkstudio-{job}.json").read_text())
        current = _fingerprint(script, list(manifest["inputs"]), list(manifest["engines"]), settings)
        if current != {k: manifest[k] for k in ("talkstudio", "settings", "engines", "script", "inputs")}:
            return False
        return all(_stamp(Path(name)) == stamp for name, stamp in manifest["outputs"].items())
    except (OSError, ValueError, KeyError, TypeError):
        return False
