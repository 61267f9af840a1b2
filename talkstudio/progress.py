"""Progress for long work: rich bars on a terminal, plain lines otherwise, nothing with --quiet."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from talkstudio.interrupts import stop_if_interrupted

Advance = Callable[..., None]
PLAIN_INTERVAL_S = 5.0  # without a terminal, a progress line at most this often


class Reporter:
    """Stages report through this; it decides how (or whether) to show them."""

    def __init__(self, quiet: bool = False, console: Console | None = None):
        self.console = console or Console(stderr=True, emoji=False)
        self.quiet = quiet
        self.fancy = not quiet and self.console.is_terminal

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(escape(message), highlight=False)

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False)

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Advance]:
        """Yield `advance(n=1)`; show a bar (terminal) or a start and an end line (plain). Every step is
        also a checkpoint where a Ctrl-C that Python dropped is raised (talkstudio.interrupts)."""
        started = time.perf_counter()
        if self.fancy:
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
            with Progress(*columns, console=self.console, transient=True) as bar:
                task = bar.add_task(description, total=total)

                def step(n: int = 1) -> None:
                    stop_if_interrupted()
                    bar.advance(task, n)

                yield step
        else:
            done, last_line = [0], [started]

            def advance(n: int = 1) -> None:
                stop_if_interrupted()
                done[0] += n
                now = time.perf_counter()
                if not self.quiet and now - last_line[0] >= PLAIN_INTERVAL_S and done[0] < total:
                    last_line[0] = now
                    rate = done[0] / (now - started)
                    self.info(f"{description}: {done[0]}/{total}, eta {(total - done[0]) / rate:.0f} s")

            self.info(f"{description}: {total} to do")
            yield advance
        if not self.quiet:
            self.info(f"{description}: {total} done in {time.perf_counter() - started:.2f} s")
