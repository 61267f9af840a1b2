"""`talkstudio review SCRIPT`: a local page to see, hear and fix a production line by line.

Needs the `review` extra (Starlette, uvicorn, ruamel.yaml): pip install 'talkstudio[review]'.
"""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

from talkstudio.errors import InputError, Problem


def serve(script: Path, target: Path, cache, port: int = 0, open_browser: bool = True, announce=print) -> None:
    """Serve the review page for `script` (rendered to `target`) on 127.0.0.1 until Ctrl-C."""
    try:
        import uvicorn

        from talkstudio.review.app import make_app
        from talkstudio.review.session import Session
    except ImportError as error:
        raise InputError(Problem(f"the review page needs {error.name}, which is not installed",
                                 hint="pip install 'talkstudio[review]'")) from None
    if not Path(script).is_file():
        raise InputError(Problem("screenplay not found", file=Path(script), hint="give the YAML to review"))
    port = port or free_port()
    token = secrets.token_urlsafe(24)
    session = Session(Path(script).resolve(), Path(target).resolve(), cache)
    url = f"http://127.0.0.1:{port}/?token={token}"
    announce(f"review page: {url}  (Ctrl-C stops it)")
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    uvicorn.run(make_app(session, token, port), host="127.0.0.1", port=port, log_level="warning")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
