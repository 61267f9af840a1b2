"""Content-addressed store for expensive artefacts.

An artefact lives at `<root>/<kind>/<key[:2]>/<key><suffix>`, where the key is
the SHA-256 of a canonical JSON of everything that determines it. Writes go to
a temporary name in the same folder and are renamed when complete, so a killed
run never leaves a half file under a finished name; what a killed writer left
behind is removed when the same file is next completed.

Every entry is sealed when complete: its size and SHA-256 go into a `.sum` file
beside it, written after the entry is flushed and in place. A lookup trusts an
entry only when its seal matches (a truncated, zeroed or flipped file, or one
whose writer died before sealing, is not found and is made again), so a damaged
cache costs time, never a wrong video.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

CACHE_ENV = "TALKSTUDIO_CACHE"
ABANDONED_ELSEWHERE_S = 24 * 3600  # a shared folder's leftover from another machine is stale after this


def default_cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "talkstudio"


def content_key(parts: dict) -> str:
    """SHA-256 of the canonical JSON of `parts` (sorted keys, paths and numbers as written)."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def pixels_digest(image) -> str:
    """SHA-256 of an array's bytes (an image's pixels, a mask), for keys made from picture content."""
    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


_digests: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, or of a folder's files and names; memoised per (path, size, mtime)."""
    path = Path(path)
    if path.is_dir():
        entries = sorted(p for p in path.rglob("*") if p.is_file())
        return content_key({str(p.relative_to(path)): file_digest(p) for p in entries})
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo not in _digests:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _digests[memo] = digest.hexdigest()
    return _digests[memo]


SEAL = ".sum"


def seal(target: Path, content: Path) -> None:
    """Record the size and SHA-256 of `content`, about to be renamed onto the cache entry `target`, beside
    `target`. Sealing comes first, so an entry is never visible under its name without its seal."""
    target, content = Path(target), Path(content)
    with atomic_write(target.with_name(target.name + SEAL), "w") as f:
        f.write(f"{content.stat().st_size} {file_digest(content)}\n")


def is_sealed(path: Path) -> bool:
    """The entry is whole: its size and SHA-256 are those recorded when it was completed."""
    path = Path(path)
    try:
        size, digest = path.with_name(path.name + SEAL).read_text().split()
        return path.stat().st_size == int(size) and file_digest(path) == digest
    except (OSError, ValueError):
        return False


@contextmanager
def atomic_write(target: Path, mode: str = "wb", sealed: bool = False) -> Iterator[IO]:
    """Open a temporary file beside `target`; rename it onto `target` only if the block succeeds
    (and, `sealed`, record its seal for cache lookups)."""
    import tempfile

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=temp_prefix(target), suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, 0o666 & ~_umask())  # mkstemp makes files private; finished ones follow the umask
        if sealed:
            seal(target, Path(temp))
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    remove_abandoned_temps(target)


def temp_prefix(target: Path) -> str:
    """The start of a temporary file's name for `target`: who writes it, so leftovers can be told from live work.

    `~` cannot appear in a host name, so the writer is read back unambiguously.
    """
    return f".{target.name}~{socket.gethostname()}~{os.getpid()}~"


def remove_abandoned_temps(target: Path) -> None:
    """Delete the temporary files for `target` whose writers are gone (killed before they could clean up)."""
    start = f".{target.name}~"
    for temp in glob.glob(glob.escape(str(target.parent / start)) + "*.part"):
        if _abandoned(Path(temp), Path(temp).name[len(start):-len(".part")].split("~")):
            Path(temp).unlink(missing_ok=True)


def _abandoned(temp: Path, writer: list[str]) -> bool:
    if len(writer) != 3 or not writer[1].isdigit():
        return False  # not named by temp_prefix for this target
    host, pid = writer[0], int(writer[1])
    if host != socket.gethostname():
        try:
            return time.time() - temp.stat().st_mtime > ABANDONED_ELSEWHERE_S
        except FileNotFoundError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        pass
    return False


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class Cache:
    """A content-addressed folder; `enabled=False` reads nothing (but still writes)."""

    def __init__(self, root: Path | None = None, enabled: bool = True):
        self.root = Path(root) if root else default_cache_root()
        self.enabled = enabled

    def path(self, kind: str, key: str, suffix: str) -> Path:
        return self.root / kind / key[:2] / f"{key}{suffix}"

    def lookup(self, kind: str, key: str, suffix: str) -> Path | None:
        """The entry's path when it is there and whole (its seal matches), else None: make it again."""
        path = self.path(kind, key, suffix)
        return path if self.enabled and path.is_file() and is_sealed(path) else None
