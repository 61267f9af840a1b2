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
