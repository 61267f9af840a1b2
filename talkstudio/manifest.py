"""Up-to-date checks for an output folder.

After a successful run, a manifest beside the outputs records what produced
them: the screenplay's bytes, every file it refers to, the versions of
talkstudio and of the installed voice engines, and the size and mtime of each
output. A later run whose inputs all match, and whose outputs are untouched,
has nothing to do. The check reads only these files, so it costs milliseconds.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, entry_points, version
from pathlib import Path

from talkstudio import __version__
from talkstudio.cache import atomic_write, file_digest


def _engine_versions() -> dict[str, str]:
    names = {"espeakng-loader"}
    names |= {ep.dist.name for ep in entry_points(group="talkstudio.voices") if ep.dist}
    found = {}
    for name in sorted(names):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


def _fingerprint(script: Path, inputs: list[Path]) -> dict:
    return {
        "talkstudio": __version__,
        "engines": _engine_versions(),
        "script": [str(Path(script).resolve()), file_digest(script)],
        "inputs": {str(p): file_digest(p) if p.exists() else None for p in sorted(set(inputs))},
    }


def _stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def record(out_dir: Path, job: str, script: Path, inputs: list[Path], outputs: list[Path]) -> None:
    manifest = _fingerprint(script, inputs)
    manifest["outputs"] = {str(p.relative_to(out_dir)): _stamp(p) for p in outputs}
    with atomic_write(Path(out_dir) / f".talkstudio-{job}.json", "w") as f:
        json.dump(manifest, f, indent=1)


def up_to_date(out_dir: Path, job: str, script: Path) -> bool:
    """True when the outputs of `job` in `out_dir` were made from exactly these inputs and are untouched."""
    try:
        manifest = json.loads((Path(out_dir) / f".talkstudio-{job}.json").read_text())
        inputs = [Path(p) for p in manifest["inputs"]]
        if _fingerprint(script, inputs) != {k: manifest[k] for k in ("talkstudio", "engines", "script", "inputs")}:
            return False
        return all(_stamp(Path(out_dir) / name) == stamp for name, stamp in manifest["outputs"].items())
    except (OSError, ValueError, KeyError, TypeError):
        return False
