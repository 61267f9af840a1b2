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
