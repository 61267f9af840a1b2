"""Model folders as users download them: what a backend misses, said once, with how to get it."""

from __future__ import annotations

from pathlib import Path

from talkstudio.errors import InputError, Problem


def check_complete(backend: str, root: Path, missing: list[tuple[Path, str]], downloads: dict[str, str]) -> None:
    """An InputError naming every missing path (relative to `root`) and the download command of each source
    ("DIR" in a command stands for `root`); nothing when nothing is missing."""
    if not missing:
        return
    sources = sorted({source for _, source in missing})
    raise InputError(Problem(
        f"the {backend} models under {root} are incomplete; missing: "
        + ", ".join(str(path.relative_to(root)) for path, _ in missing),
        hint="download them (Hugging Face CLI): " + "; ".join(downloads[s].replace("DIR", str(root)) for s in sources)))


def weights_identity(files) -> str:
    """A short digest of every file a backend loads (name, size, modification time; folders walked), for its
    version: chunks rendered with other weights in the same folder are not taken from the cache. Reading
    tens of gigabytes to hash them would cost minutes at every start."""
    import dataclasses
    import hashlib

    digest = hashlib.sha256()
    for field in dataclasses.fields(files):
        value = getattr(files, field.name)
        for path in value if isinstance(value, tuple) else (value,):
            if not isinstance(path, Path):
                continue
            for item in sorted(path.rglob("*")) if path.is_dir() else [path]:
                if item.is_file():
                    stat = item.stat()
                    digest.update(f"{item.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:12]
