"""The review server: a Starlette app on 127.0.0.1 with a random token, serving the page, the state
of one production, its media, edits and renders, and live events (server-sent events).

Safe by default: every request carries the token (query `token=`, or the cookie the page gets),
the Host header must be this server's (no DNS rebinding), and only the render's own files are
served; nothing is written but the screenplay (through `Session.edit_line`) and the render.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from talkstudio.errors import InputError
from talkstudio.review.session import Conflict, Session

STATIC = Path(__file__).parent / "static"
COOKIE = "talkstudio_review"
STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css"}


class Guard:
    """Token and Host checks before anything else (an ASGI middleware)."""

    def __init__(self, app, token: str, hosts: set[str]):
        self.app, self.token, self.hosts = app, token, hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        host = request.headers.get("host", "")
        if host not in self.hosts:
            return await PlainTextResponse("unknown host", status_code=403)(scope, receive, send)
        given = request.query_params.get("token") or request.cookies.get(COOKIE) or ""
        if not hmac.compare_digest(given, self.token):
            return await PlainTextResponse("a token is needed: open the address talkstudio printed",
                                           status_code=403)(scope, receive, send)
        await self.app(scope, receive, send)


async def _written(change, *args) -> Response:
    """An edit's answer: the file's new version, validate's problems (422) or the conflict (409)."""
    try:
        return JSONResponse(await asyncio.to_thread(change, *args))
    except InputError as error:
        return JSONResponse({"problems": [p.render() for p in error.problems],
                             "lines": [p.line for p in error.problems]}, status_code=422)
    except Conflict as conflict:
        return JSONResponse({"problems": [str(conflict)]}, status_code=409)


def make_app(sessions: Session | dict[str, Session], token: str, port: int) -> Starlette:
    """The app for one production, or for a batch's episodes by name (`?episode=NAME` picks one)."""
    sessions = sessions if isinstance(sessions, dict) else {"": sessions}
    first = next(iter(sessions))

    def per_episode(handler):
        """The handler gets the session of the episode asked for (`?episode=`; the first by default)."""
        async def with_session(request: Request) -> Response:
            session = sessions.get(request.query_params.get("episode") or first)
            if session is None:
                return PlainTextResponse("no such episode", status_code=404)
            return await handler(request, session)
        return with_session

    async def page(request: Request) -> Response:
        response = FileResponse(STATIC / "index.html", media_type="text/html")
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(STATIC / name, media_type=STATIC_FILES[name])

    async def state(request: Request, session: Session) -> Response:
        found = await asyncio.to_thread(session.state)
        if len(sessions) > 1:
            found["episodes"] = list(sessions)
        return JSONResponse(found)

    async def edit(request: Request, session: Session) -> Response:
        body = await request.json()
        return await _written(session.edit_line, int(body["scene"]), int(body["line"]), dict(body["changes"]),
                              str(body["version"]))

    async def chunks(request: Request, session: Session) -> Response:
        try:
            return JSONResponse(await asyncio.to_thread(session.chunks))
        except InputError as error:
            return JSONResponse({"problems": [p.render() for p in error.problems]}, status_code=422)

    async def peaks(request: Request, session: Session) -> Response:
        return JSONResponse(await asyncio.to_thread(session.peaks, request.path_params["speaker"]))

    async def audition(request: Request, session: Session) -> Response:
        body = await request.json()
        try:
            await asyncio.to_thread(session.audition, str(body["speaker"]), str(body["text"]),
                                    dict(body.get("voice") or {}), body.get("delivery"))
        except InputError as error:
            return JSONResponse({"problems": [p.render() for p in error.problems]}, status_code=422)
        return JSONResponse({"sample": "media/audition.wav"})

    async def voice(request: Request, session: Session) -> Response:
        body = await request.json()
        return await _written(session.edit_voice, str(body["cast"]), dict(body["changes"]), str(body["version"]))

    async def render(request: Request, session: Session) -> Response:
        answer = session.render()
        return JSONResponse({"render": answer}, status_code=409 if answer == "refused" else 202)

    async def media(request: Request, session: Session) -> Response:
        kind = request.path_params["kind"]
        files = {"video.mp4": session.target, "subtitles.vtt": session.target.with_suffix(".vtt"),
                 "audition.wav": session.work_dir / "audition.wav"}
        if kind.startswith("track-") and kind.endswith(".wav"):
            files[kind] = session.work_dir / "tracks" / kind.removeprefix("track-")
        if kind.startswith("chunk-") and kind.endswith(".jpg"):
            files[kind] = await asyncio.to_thread(session.thumbnail, kind[len("chunk-"):-len(".jpg")]) or Path("/nonexistent")
        path = files.get(kind)
        if path is None or not path.is_file() or not path.resolve().is_relative_to(session.target.parent.resolve()):
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(path)

    async def events(request: Request, session: Session) -> Response:
        after = int(request.query_params.get("after", "0"))

        async def stream():
            sent = after
            while not await request.is_disconnected():
                fresh = session.events[sent:]
                for event in fresh:
                    yield f"data: {json.dumps(event)}\n\n"
                sent += len(fresh)
                if not fresh:
                    yield ": still here\n\n"
                await asyncio.sleep(0.25)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    routes = [Route("/", page), Route("/static/{name}", static), Route("/api/state", per_episode(state)),
              Route("/api/line", per_episode(edit), methods=["POST"]),
              Route("/api/render", per_episode(render), methods=["POST"]),
              Route("/api/audition", per_episode(audition), methods=["POST"]),
              Route("/api/voice", per_episode(voice), methods=["POST"]), Route("/api/events", per_episode(events)),
              Route("/api/peaks/{speaker}", per_episode(peaks)), Route("/api/chunks", per_episode(chunks)),
              Route("/media/{kind}", per_episode(media))]
    hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
    return Starlette(routes=routes, middleware=[Middleware(Guard, token=token, hosts=hosts)])
