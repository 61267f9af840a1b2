"""Progress: plain lines without a terminal, nothing but warnings with --quiet."""

import io

from rich.console import Console

import talkstudio.progress as progress
from talkstudio.progress import Reporter


def test_plain_lines_when_not_a_terminal(monkeypatch):
    monkeypatch.setattr(progress, "PLAIN_INTERVAL_S", 0.0)
    reporter = Reporter(console=Console(file=io.StringIO(), force_terminal=False))
    with reporter.task("speech", 3) as advance:
        for _ in range(3):
            advance()
    lines = reporter.console.file.getvalue().splitlines()
    assert lines[0] == "speech: 3 to do" and lines[1].startswith("speech: 1/3, eta")
    assert lines[-1].startswith("speech: 3 done in")


def test_quiet_prints_only_warnings(capsys):
    sink = io.StringIO()
    reporter = Reporter(quiet=True, console=Console(file=sink, force_terminal=False))
    with reporter.task("speech", 2) as advance:
        advance(2)
    reporter.info("hello")
    reporter.warn("careful")
    assert capsys.readouterr().err == ""
    assert sink.getvalue().strip() == "warning: careful"


def test_bars_on_a_terminal():
    sink = io.StringIO()
    reporter = Reporter(console=Console(file=sink, force_terminal=True, width=100))
    with reporter.task("speech", 2) as advance:
        advance(2)
    assert "speech: 2 done in" in sink.getvalue()


def test_a_ctrl_c_that_lands_in_a_finaliser_is_raised_at_the_next_progress_step():
    import subprocess
    import sys
    import textwrap

    from conftest import ROOT

    program = textwrap.dedent("""
        from talkstudio.interrupts import catch_dropped
        from talkstudio.progress import Reporter
        catch_dropped()
        class Finaliser:
            def __del__(self):
                raise KeyboardInterrupt  # where Python would print it and go on
        with Reporter(quiet=True).task("chunks", 3) as advance:
            Finaliser()
            try:
                advance()
            except KeyboardInterrupt:
                print("stopped at the checkpoint")
            else:
                print("went on")
    """)
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.stdout.strip() == "stopped at the checkpoint" and "Traceback" not in run.stderr
