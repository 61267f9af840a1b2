"""What the review page works on: one screenplay, its render, and the edits made to it.

Edits are written back into the screenplay with ruamel.yaml's round trip (comments, order and
formatting kept), checked first exactly as `talkstudio validate` checks (on a copy beside the file, so
relative paths resolve), and only when the file is still the version the page saw: two tabs never
overwrite each other's edits. Renders run one at a time in a background thread; the chunk cache
makes a re-render redo only the speech and chunks an edit reaches.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from talkstudio.cache import Cache
from talkstudio.errors import InputError, Problem
from talkstudio.progress import Reporter

EDITABLE = {"text", "speaker", "pause", "overlap", "delivery", "emotion", "offscreen"}
VOICE_EDITABLE = {"engine", "id", "language", "rate", "pitch", "volume", "whisper", "emphasis"}


class Conflict(Exception):
    """The file changed since the page read it."""


@dataclass
class Session:
    script: Path
    target: Path
    cache: Cache
    events: list[dict] = field(default_factory=list)  # everything that happened, in order; pages follow it
    rendering: bool = False
    last: dict = field(default_factory=dict)  # the last render's result
    read_only: bool = False  # a podcast episode: its audio is recorded, its lines come from the transcript
    queued: bool = False  # edits came in during a render: one more render follows it
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def work_dir(self) -> Path:
        return self.target.with_suffix("")

    def version(self) -> str:
        return hashlib.sha256(self.script.read_bytes()).hexdigest()[:16]

    def publish(self, kind: str, **data) -> None:
        with self._lock:
            self.events.append({"n": len(self.events), "kind": kind, "time": time.time(), **data})

    def state(self) -> dict:
        """The screenplay as the page shows it, and the render beside it when there is one."""
        from talkstudio.checks import load_screenplay

        if self.read_only:
            return self._recorded_state()
        problems = []
        try:
            screenplay = load_screenplay(self.script)
            scenes = [{"id": scene.id, "lines": [{"speaker": line.speaker, "text": line.text or "",
                                                  "where": line.where, **_line_settings(line)}
                                                 for line in scene.lines]} for scene in screenplay.scenes]
            cast = {cast_id: {"name": c.name, "voice": c.voice.model_dump(mode="json"), "voice_only": c.voice_only}
                    for cast_id, c in screenplay.cast.items()}
        except InputError as error:
            scenes, cast = [], {}
            problems = [p.render() for p in error.problems]
        return {"script": self.script.name, "version": self.version(), "scenes": scenes, "cast": cast,
                "problems": problems, "cues": self.cues(), "video": self.target.is_file(),
                "rendering": self.rendering, "last": self.last, "events": len(self.events)}

    def cues(self) -> dict | None:
        """The render's cues.json, once there is one."""
        found = self.work_dir / "cues.json"
        return json.loads(found.read_text()) if found.is_file() else None

    def chunks(self) -> list[dict]:
        """Every chunk of the production as the screenplay now stands: where it lies, whether the cache
        has it (else a render makes it), and what one costs (the last render's seconds per chunk)."""
        from talkstudio.checks import load_screenplay
        from talkstudio.chunks import chunk_cached, plan_chunks
        from talkstudio.generators import GENERATORS, get_generator
        from talkstudio.render import RenderOptions, load_generator
        from talkstudio.speech import speak_all, timeline_rate
        from talkstudio.stage import build_stage
        from talkstudio.timeline import build_timeline

        screenplay = load_screenplay(self.script)
        generator = load_generator(screenplay, RenderOptions(), GENERATORS, get_generator)
        rate = timeline_rate(screenplay)
        clips, _ = speak_all(screenplay, self.cache, rate, Reporter(quiet=True))
        timeline = build_timeline(screenplay, clips, rate)
        stages = [build_stage(screenplay, scene, self.cache) for scene in screenplay.scenes]
        plans = plan_chunks(screenplay, timeline, stages, generator.info, generator.version(),
                            seed=screenplay.video.seed)
        seconds = self.last.get("seconds", {}).get("chunks")
        rendered = self.last.get("rendered") or 0
        cost = round(seconds / rendered, 2) if seconds and rendered else None
        return [{"scene": screenplay.scenes[chunk.scene].id, "index": chunk.span.index, "key": chunk.key,
                 "start": (timeline.scenes[chunk.scene].start_frame + chunk.span.start) / timeline.fps,
                 "frames": chunk.span.frame_num, "cached": chunk_cached(self.cache, chunk, generator.info.chained),
                 "seconds": cost} for planned in plans for chunk in planned]

    def thumbnail(self, key: str) -> Path | None:
        """The first frame of a cached chunk, small (made once, kept in the render's folder)."""
        import re
        import subprocess

        from talkstudio.audio_io import ffmpeg_exe

        if not re.fullmatch(r"[0-9a-f]{16,128}", key):
            return None
        chunk = self.cache.path("chunks", key, ".mp4")
        still = self.work_dir / "thumbs" / f"{key}.jpg"
        if not still.is_file() and chunk.is_file():
            still.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(chunk), "-vf",
                            "scale=160:-2", "-frames:v", "1", str(still)], check=False, timeout=60)
        return still if still.is_file() else None

    def peaks(self, speaker: str, count: int = 1200) -> list[float]:
        """The speaker's track as `count` peak levels (0..1), for the lane's waveform; none before a render."""
        import numpy as np
        from scipy.io import wavfile

        track = self.work_dir / "tracks" / f"{speaker}.wav"
        if not track.is_file() or track.parent.resolve() != (self.work_dir / "tracks").resolve():
            return []
        _, raw = wavfile.read(track, mmap=True)
        samples = np.abs(np.asarray(raw, np.float32).reshape(len(raw), -1).mean(axis=1))
        if np.issubdtype(raw.dtype, np.integer):
            samples /= float(np.iinfo(raw.dtype).max)
        edges = np.linspace(0, len(samples), count + 1).astype(int)
        return [round(float(samples[a:b].max()) if b > a else 0.0, 3) for a, b in zip(edges, edges[1:])]

    def audition(self, speaker: str, text: str, voice: dict, delivery: str | None) -> Path:
        """A line said by `speaker`'s voice with `voice` settings over it (e.g. another id, rate, pitch)
        and `delivery` words, into the render's folder: heard before anything is kept."""
        from talkstudio.audition import cast_voice, delivery_hints, say

        cast, lexicon = cast_voice(self.script, speaker, voice)
        sample = self.work_dir / "audition.wav"
        say(text, cast, lexicon, delivery_hints(delivery), sample, self.cache)
        self.publish("auditioned", speaker=speaker, voice=voice)
        return sample

    def _recorded_state(self) -> dict:
        """A podcast episode as the page shows it: its cues and transcript as they were rendered."""
        cues = self.cues()
        names = {s["id"]: s["name"] for s in (cues or {}).get("speakers", [])}
        scenes = [{"id": scene["id"], "lines": [{"speaker": c["speaker"], "text": c["text"], "where": c.get("source", "")}
                                                for c in cues["cues"] if c["scene"] == scene["id"]]}
                  for scene in cues["scenes"]] if cues else []
        return {"script": self.script.name, "version": self.version(), "scenes": scenes, "read_only": True,
                "cast": {i: {"name": n, "voice": {}, "voice_only": False} for i, n in names.items()},
                "problems": [] if cues else [f"{self.target} has not been made yet: run talkstudio podcast first"],
                "cues": cues, "video": self.target.is_file(), "rendering": False, "last": self.last,
                "events": len(self.events)}

    def edit_line(self, scene: int, line: int, changes: dict, version: str) -> dict:
        """Write the changes into line `line` of scene `scene` (indices), round trip; InputError with
        validate's messages when the result would not load, Conflict when the file moved on."""
        self._refuse_if_read_only()
        unknown = set(changes) - EDITABLE
        if unknown:
            raise InputError(Problem(f"cannot edit {', '.join(sorted(unknown))} here",
                                     hint=f"editable: {', '.join(sorted(EDITABLE))}"))
        def change(document) -> int | None:
            at = _line_number(document, scene, line)
            _change(document, scene, line, changes)
            return at

        done = self._rewrite(version, change, f"scenes[{scene}].lines[{line}]")
        self.publish("edited", scene=scene, line=line, changes=changes)
        return done

    def edit_voice(self, cast_id: str, changes: dict, version: str) -> dict:
        """Write voice settings of one character (id, rate, pitch...) into the screenplay, as `edit_line`."""
        self._refuse_if_read_only()
        unknown = set(changes) - VOICE_EDITABLE
        if unknown:
            raise InputError(Problem(f"cannot set {', '.join(sorted(unknown))} here",
                                     hint=f"voice settings: {', '.join(sorted(VOICE_EDITABLE))}"))
        done = self._rewrite(version, lambda document: _voice_change(document, cast_id, changes), f"cast.{cast_id}.voice")
        self.publish("voice edited", cast=cast_id, changes=changes)
        return done

    def _rewrite(self, version: str, change, edited: str) -> dict:
        """Apply `change` (document -> the file line of what it changed) to the screenplay, round trip,
        and write it when it loads; only onto the `version` the page read."""
        with self._lock:
            if version != self.version():
                raise Conflict("the screenplay changed since this page read it (another tab, or an editor)")
            document, yaml = _round_trip(self.script)
            at = change(document)
            text = io.StringIO()
            yaml.dump(document, text)
            _checked(self.script, text.getvalue(), edited, at)
            _replace(self.script, text.getvalue())
        return {"version": self.version()}

    def _refuse_if_read_only(self) -> None:
        if self.read_only:
            raise InputError(Problem("a podcast episode is reviewed as it was recorded: nothing here is edited",
                                     hint="change the transcript or the cast file and run talkstudio podcast again"))

    def render(self, options=None) -> str:
        """Start a render in the background: "started"; "queued" when one is running (another follows it,
        for everything edited meanwhile); "refused" for a recorded episode."""
        if self.read_only:
            return "refused"
        with self._lock:
            queued = self.rendering
            if queued:
                self.queued = True
            else:
                self.rendering = True
        if queued:
            self.publish("render queued")
            return "queued"
        threading.Thread(target=self._render, args=(options,), daemon=True, name="review-render").start()
        return "started"

    def _render(self, options) -> None:
        from talkstudio.render import RenderOptions, render_video

        self.publish("render started")
        try:
            result = render_video(self.script, self.target, self.cache, EventReporter(self), options or RenderOptions())
            self.last = {"chunks": result.chunks, "rendered": result.chunks - result.chunks_cached,
                         "up_to_date": result.up_to_date, "seconds": result.seconds}
            self.publish("render finished", **self.last)
        except InputError as error:
            self.last = {"error": "\n".join(p.render() for p in error.problems)}
            self.publish("render failed", error=self.last["error"])
        except Exception as error:  # noqa: BLE001 - the page shows it; the server goes on
            self.last = {"error": f"{type(error).__name__}: {error}"}
            self.publish("render failed", error=self.last["error"])
        finally:
            with self._lock:
                again, self.queued = self.queued, False
                self.rendering = again
            if again:  # what was edited while this one ran
                threading.Thread(target=self._render, args=(options,), daemon=True, name="review-render").start()


class EventReporter(Reporter):
    """Progress as events for the page, instead of a terminal."""

    def __init__(self, session: Session):
        super().__init__(quiet=True)
        self.session = session

    def info(self, message: str) -> None:
        self.session.publish("info", message=message)

    def warn(self, message: str) -> None:
        self.session.publish("warning", message=message)

    @contextmanager
    def task(self, description: str, total: int):
        done = [0]
        self.session.publish("task", task=description, done=0, total=total)

        def advance(n: int = 1) -> None:
            done[0] += n
            self.session.publish("task", task=description, done=done[0], total=total)

        yield advance


def _line_settings(line) -> dict:
    settings = {k: getattr(line, k) for k in ("pause", "overlap", "emotion") if getattr(line, k) is not None}
    if line.offscreen:
        settings["offscreen"] = True
    if line.delivery is not None:
        settings["delivery"] = line.delivery.model_dump(exclude_defaults=True)
    return settings


def _round_trip(path: Path):
    from ruamel.yaml import YAML
    from ruamel.yaml.util import load_yaml_guess_indent

    text = path.read_text(encoding="utf-8")
    _, sequence, offset = load_yaml_guess_indent(text)
    yaml = YAML()  # round trip: comments, key order, quoting and flow style are kept
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=_mapping_indent(text), sequence=sequence or 2, offset=offset or 0)
    return yaml.load(text), yaml


def _mapping_indent(text: str) -> int:
    """How far the file indents a mapping under its key (ruamel guesses only sequences'); 2 if unsure."""
    import re
    from collections import Counter

    steps = Counter()
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    for line, following in zip(lines, lines[1:]):
        if re.search(r":\s*(#.*)?$", line) and not following.lstrip().startswith("-"):
            step = (len(following) - len(following.lstrip())) - (len(line) - len(line.lstrip()))
            if step > 0:
                steps[step] += 1
    return steps.most_common(1)[0][0] if steps else 2


def _change(document, scene: int, line: int, changes: dict) -> None:
    """Apply the changes to the line's mapping, keeping its shorthand (`- ana: text`) when it has one."""
    try:
        entry = document["scenes"][scene]["lines"][line]
    except (KeyError, IndexError, TypeError):
        raise InputError(Problem(f"scene {scene + 1} has no line {line + 1}")) from None
    speaker_key = next((k for k in entry if k not in EDITABLE and k not in ("audio", "prompt", "speaker")), None)
    for key, value in changes.items():
        if key == "text" and speaker_key is not None:
            entry[speaker_key] = value
        elif key == "speaker" and speaker_key is not None:
            position = list(entry).index(speaker_key)
            text = entry.pop(speaker_key)
            entry.insert(position, value, text)
            speaker_key = value
        elif value is None:
            entry.pop(key, None)
        else:
            _set_keeping_comments(entry, key, value)


def _voice_change(document, cast_id: str, changes: dict) -> int | None:
    """Apply voice settings to a character, turning a `voice: ava` shorthand into a mapping; the line."""
    from ruamel.yaml.comments import CommentedMap

    try:
        character = document["cast"][cast_id]
    except (KeyError, TypeError):
        raise InputError(Problem(f"no character '{cast_id}' in the cast")) from None
    if character is None:
        character = document["cast"][cast_id] = CommentedMap()
    voice = character.get("voice")
    if not isinstance(voice, dict):
        voice = CommentedMap({"id": voice} if voice is not None else {})
        character["voice"] = voice
    for key, value in changes.items():
        if value is None:
            voice.pop(key, None)
        else:
            voice[key] = value
    try:
        return document["cast"].lc.key(cast_id)[0] + 1
    except (KeyError, AttributeError):
        return None


def _line_number(document, scene: int, line: int) -> int | None:
    """The 1-based line of the file where line `line` of scene `scene` is written."""
    try:
        return document["scenes"][scene]["lines"].lc.item(line)[0] + 1
    except (KeyError, IndexError, TypeError, AttributeError):
        return None


def _set_keeping_comments(mapping, key: str, value) -> None:
    """Set a key; a new one goes last, and the comment that followed the old last value (in a list of
    lines: the comment above the next line) moves after it, where it was."""
    if key in mapping or not mapping:
        mapping[key] = value
        return
    last = list(mapping)[-1]
    trailing = getattr(mapping, "ca", None) and mapping.ca.items.pop(last, None)
    mapping[key] = value
    if trailing:
        mapping.ca.items[key] = trailing


def _checked(script: Path, text: str, edited: str, at: int | None) -> None:
    """Raise validate's problems for `text` as the screenplay (checked as a copy beside it); those of
    the edited line are put at its line in the file as it is (the edit was not written)."""
    from talkstudio.checks import load_screenplay

    probe = script.with_name(f".{script.stem}.review-check{script.suffix}")
    probe.write_text(text, encoding="utf-8")
    try:
        load_screenplay(probe)
    except InputError as error:
        raise InputError([Problem(p.message, file=script,
                                  line=at if (p.field or "").startswith(edited) and at else p.line,
                                  column=None if (p.field or "").startswith(edited) else p.column,
                                  field=p.field, hint=p.hint) for p in error.problems]) from None
    finally:
        probe.unlink(missing_ok=True)


def _replace(script: Path, text: str) -> None:
    """The screenplay replaced whole (never half-written), keeping its permissions."""
    import os

    from talkstudio.cache import atomic_write

    mode = script.stat().st_mode
    with atomic_write(script, "w") as f:
        f.write(text)
    os.chmod(script, mode & 0o7777)
