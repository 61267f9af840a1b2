"""`talkstudio review SCRIPT`: a local page to see, hear and fix a production line by line.

Needs the `review` extra (Starlette, uvicorn, ruamel.yaml): pip install 'talkstudio[review]'.
"""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

from talkstudio.errors import InputError, Problem


def serve(script: Path, target: Path, cache, port: int = 0, open_browser: bool = True, announce=print,
          podcast: bool = False) -> None:
    """Serve the review page on 127.0.0.1 until Ctrl-C: for `script` (rendered to `target`), for a
    batch output folder (each episode by name), or for a podcast episode (read only)."""
    try:
        import uvicorn

        from talkstudio.review.app import make_app
        from talkstudio.review.session import Session
    except ImportError as error:
        raise InputError(Problem(f"the review page needs {error.name}, which is not installed",
                                 hint="pip install 'talkstudio[review]'")) from None
    if Path(script).is_dir():
        session = batch_sessions(Path(script), cache)
    elif Path(script).is_file():
        session = Session(Path(script).resolve(), Path(target).resolve(), cache, read_only=podcast)
    else:
        raise InputError(Problem("screenplay not found", file=Path(script),
                                 hint="give the YAML to review, a batch output folder, or --podcast CAST.yaml"))
    port = port or free_port()
    token = secrets.token_urlsafe(24)
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


def batch_sessions(folder: Path, cache) -> dict:
    """Each episode of a batch output folder (its batch-report.json), by name, as the batch made it."""
    import json

    from talkstudio.review.session import Session

    report = folder / "batch-report.json"
    if not report.is_file():
        raise InputError(Problem("not a batch output folder: no batch-report.json", file=folder,
                                 hint="give a screenplay, or the -o folder of talkstudio batch"))
    episodes = json.loads(report.read_text())["episodes"]
    sessions = {e["episode"]: Session(Path(e["screenplay"]).resolve(),
                                      Path(e.get("output") or folder / f"{e['episode']}.mp4").resolve(), cache)
                for e in episodes if e.get("screenplay") and Path(e["screenplay"]).is_file()}
    if not sessions:
        raise InputError(Problem("the batch report names no episode screenplay that exists", file=report,
                                 hint="run the batch again"))
    return sessions
