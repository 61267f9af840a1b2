"""Errors meant for people.

`InputError` is bad input (exit code 2): it carries one or more `Problem`s, each
naming the file, line, column and field, what is wrong and how to fix it.
Anything else that escapes is an internal failure (exit code 1, logged).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    message: str
    file: Path | None = None
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based
    field: str | None = None  # dotted path such as scenes[0].lines[3].speaker
    hint: str | None = None

    def where(self) -> str:
        if self.file is None:
            return ""
        place = str(self.file)
        if self.line is not None:
            place += f":{self.line}"
            if self.column is not None:
                place += f":{self.column}"
        return place

    def render(self) -> str:
        head = self.where()
        text = f"{head}: " if head else ""
        if self.field:
            text += f"{self.field}: "
        text += self.message
        if self.hint:
            text += f"\n    fix: {self.hint}"
        return text


class InputError(Exception):
    """Bad input from the user; the CLI prints the problems and exits with 2."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = list(problems)
        super().__init__("\n".join(p.render() for p in self.problems))


# what an operating-system error means for someone running talkstudio, when it is about their machine
# (space, permissions, a file where a folder should be) rather than about the program
_ENVIRONMENT = {
    "ENOSPC": ("the disk is full", "free some space (the cache keeps what was finished) and run it again"),
    "EDQUOT": ("the disk quota is used up", "free some space and run it again"),
    "EROFS": ("the file system is read-only", "choose a writable -o / --cache"),
    "EACCES": ("permission denied", "choose a folder you can write to (-o, --cache) or fix its permissions"),
    "EPERM": ("operation not permitted", "choose a folder you can write to (-o, --cache)"),
    "ENOTDIR": ("a file is where a folder should be", "remove that file or choose another path"),
    "EEXIST": ("a file is where a folder should be", "remove that file or choose another path"),
}
_DISK_FULL_WORDS = ("No space left on device", "Disk quota exceeded")


def environment_problem(error: BaseException) -> str | None:
    """A one-paragraph explanation when `error` is a fault of the machine (disk full, read-only,
    permissions), naming what and where; None for anything else."""
    import errno

    if isinstance(error, OSError) and error.errno is not None:
        name = errno.errorcode.get(error.errno)
        if name in _ENVIRONMENT:
            what, fix = _ENVIRONMENT[name]
            where = error.filename or ""
            return f"{what}{f': {where}' if where else ''}\n    fix: {fix}"
    text = str(error)
    if any(words in text for words in _DISK_FULL_WORDS):
        what, fix = _ENVIRONMENT["ENOSPC"]
        return f"{what} (while encoding: {text.strip().splitlines()[-1][:200]})\n    fix: {fix}"
    return None
