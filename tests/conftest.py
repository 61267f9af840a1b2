import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "scripts_examples").glob("*.yaml"))


@pytest.fixture
def write_script(tmp_path):
    """Write a screenplay (dedented) into a temp folder and return its path."""

    def write(text: str, name: str = "script.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def speech_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("speech-cache")


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the installed command line as a user would, in a fresh process."""
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def start_cli(*args: str, **popen) -> subprocess.Popen:
    """Start the command line as a user would in a terminal, where Ctrl-C reaches it: SIGINT handled as by
    default even when the tests themselves run in the background (where the shell ignores SIGINT)."""
    import signal

    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *map(str, args)], text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **popen)
