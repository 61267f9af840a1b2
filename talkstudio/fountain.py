"""Fountain import: a screenplay written in Fountain (https://fountain.io/syntax) becomes our YAML.

`parse_fountain` reads the parts of Fountain 1.1 a talking video needs and keeps every
element's line number; `import_fountain` casts it from a cast file and writes the screenplay.

    Title: page              -> title
    INT. HOUSE - DAY, .FORCED -> a scene (the action before its first line becomes the scene's prompt)
    CHARACTER (V.O.) / @Name -> the speaker (extensions stripped, matched to the cast); V.O., O.S.,
                                O.C. and OFF mark the line `offscreen` (heard, not seen)
    ANA AND BEN / ANA & BEN  -> a joint cue: both speak the line at once (when each is in the cast)
    (whispering) / (angry)   -> delivery when every word is a delivery word, else emotion;
                                (beat) / (pause) -> a pause; mid-speech it starts a new line
    CHARACTER ^              -> dual dialogue: the line overlaps the one before it
    action between speeches  -> the next line's prompt (every paragraph, in order); action after a
                                scene's last line has no line to go with and is reported as left out
    /* boneyard */, [[notes]], # sections, = synopses, transitions, >centred<, === -> ignored
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from talkstudio.delivery import VOCABULARY
from talkstudio.errors import InputError, Problem

REMOVED = "\x00"  # marks where a note or the boneyard was, so a line holding only that is dropped
SCENE_HEADING = re.compile(r"^(?:INT\.?/EXT|INT|EXT|EST|I/E)[. ]", re.IGNORECASE)
SCENE_NUMBER = re.compile(r"\s*#[\w.\-]+#\s*$")
TITLE_KEY = re.compile(r"^([A-Za-z][A-Za-z ]*):(.*)$")
EMPHASIS = re.compile(r"(?<!\\)[*_]")
# parenthetical words a writer uses that the delivery vocabulary spells differently
SYNONYMS = {"whispers": "whispering", "shouts": "shouting", "yelling": "shouting", "yells": "shouting",
            "screaming": "shouting", "loudly": "loud", "hushed": "quietly", "murmuring": "quietly",
            "murmurs": "quietly", "emphatically": "emphatic", "rushing": "rushed", "quick": "fast",
            # in a screenplay "(low)" means quietly, not a lower pitch
            "low": "quietly", "lowly": "quietly", "softly": "quietly", "quiet": "quietly"}
# whole parentheticals with a screenplay meaning the delivery words do not spell out
PHRASES = {"under her breath": "quietly", "under his breath": "quietly", "under their breath": "quietly",
           "sotto voce": "quietly", "to herself": "quietly", "to himself": "quietly", "aside": "quietly",
           "barely audible": "whispering", "whispered": "whispering", "raising her voice": "loud",
           "raising his voice": "loud"}
NOT_DELIVERY = {"high"}  # "(high)" in a screenplay is a state, not a pitch: kept as the emotion
PAUSES = {"beat": 0.5, "a beat": 0.5, "pause": 0.8, "a pause": 0.8, "long pause": 1.5}
DUAL_OVERLAP = "60%"  # how much of the line before a dual-dialogue line is spoken over
JOINT_OVERLAP = "100%"  # a joint cue's second voice starts with the first


@dataclass
class Hint:
    """What a parenthetical asks for."""

    delivery: list[str] = field(default_factory=list)
    emotion: str | None = None
    pause: float | None = None


@dataclass
class Speech:
    """One line of dialogue as written: who (the cue, extensions stripped), what, and how."""

    character: str
    line_no: int  # of the character cue in the Fountain file
    text: str
    hint: Hint = field(default_factory=Hint)
    dual: bool = False  # the second half of dual dialogue: spoken over the line before
    prompt: str | None = None  # the action just before it
    offscreen: bool = False  # (V.O.), (O.S.)...: heard, not seen


@dataclass
class FountainScene:
    heading: str | None
    line_no: int
    prompt: str | None = None
    speeches: list[Speech] = field(default_factory=list)
    left_out: list[int] = field(default_factory=list)  # line numbers of action after the last speech


@dataclass
class FountainScript:
    title: str | None
    scenes: list[FountainScene]


# --- parsing ----------------------------------------------------------------------------------

def parse_fountain(text: str) -> FountainScript:
    """The title, scenes and speeches of a Fountain document (never fails: anything unknown is action)."""
    lines = _logical_lines(text)
    title, lines = _title_page(lines)
    scenes = [FountainScene(None, 1)]
    action: list[str] = []  # every action paragraph since the last speech, in order
    action_lines: list[int] = []
    i, after_blank = 0, True
    while i < len(lines):
        number, raw = lines[i]
        line = raw.strip()
        if not line:
            i, after_blank = i + 1, True
            continue
        following = lines[i + 1][1].strip() if i + 1 < len(lines) else ""
        if after_blank and _is_heading(line):
            _leave_out(scenes[-1], action_lines)
            scenes.append(FountainScene(_heading_text(line), number))
            action, action_lines = [], []
            i += 1
        elif after_blank and following and _is_character(line):
            scene = scenes[-1]
            if not scene.speeches and scene.prompt is None and action:  # what the scene opens on
                scene.prompt, action = " ".join(action), []
            i = _read_dialogue(lines, i, scene, " ".join(action) or None)
            action, action_lines = [], []
        elif _is_ignored(line):
            i += 1
        else:
            action_lines.append(number)
            i, paragraph = _read_action(lines, i)
            action += paragraph
        after_blank = False
    _leave_out(scenes[-1], action_lines)
    return FountainScript(title, [s for s in scenes if s.speeches or s.heading is not None])


def _leave_out(scene: FountainScene, action_lines: list[int]) -> None:
    """Action after a scene's last speech: no line is spoken over it (before any speech it is the prompt)."""
    if scene.speeches:
        scene.left_out += action_lines


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(line number, text) with the boneyard and notes taken out; a line that held only those is dropped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")

    def blank_out(match: re.Match) -> str:
        return REMOVED + ("\n" + REMOVED) * match.group().count("\n")

    text = re.sub(r"/\*.*?\*/", blank_out, text, flags=re.DOTALL)
    text = re.sub(r"\[\[.*?\]\]", blank_out, text, flags=re.DOTALL)
    kept = []
    for number, line in enumerate(text.split("\n"), start=1):
        if REMOVED in line and not line.replace(REMOVED, "").strip():
            continue
        kept.append((number, re.sub(r" {2,}", " ", line.replace(REMOVED, "")) if REMOVED in line else line))
    return kept


def _title_page(lines: list[tuple[int, str]]) -> tuple[str | None, list[tuple[int, str]]]:
    """The Title: of a title page at the top (a key: value block), and the lines after the page."""
    start = next((k for k, (_, line) in enumerate(lines) if line.strip()), len(lines))
    if start == len(lines) or not TITLE_KEY.match(lines[start][1]) or _is_heading(lines[start][1].strip()):
        return None, lines
    fields: dict[str, list[str]] = {}
    key = None
    end = start
    while end < len(lines) and lines[end][1].strip():
        line = lines[end][1]
        match = TITLE_KEY.match(line)
        if match and not line[:1].isspace():
            key = match[1].strip().lower()
            fields[key] = [match[2].strip()] if match[2].strip() else []
        elif key is not None:
            fields[key].append(line.strip())
        end += 1
    title = " ".join(_clean(part) for part in fields.get("title", []) if part.strip())
    return title or None, lines[end:]


def _is_heading(line: str) -> bool:
    return bool(SCENE_HEADING.match(line)) or (line.startswith(".") and not line.startswith(".."))


def _heading_text(line: str) -> str:
    return SCENE_NUMBER.sub("", line.removeprefix(".")).strip()


OFFSCREEN = {"V.O.", "VO", "V/O", "O.S.", "OS", "O.C.", "OC", "OFF", "OFF SCREEN", "OFF-SCREEN", "FILTERED",
             "ON PHONE", "ON THE PHONE", "PHONE", "RADIO", "ON RADIO", "INTO PHONE"}
JOINT = re.compile(r"\s+(?:AND|&)\s+", re.IGNORECASE)


def _is_offscreen(cue: str) -> bool:
    """The cue's extensions say the voice is heard, not seen: (V.O.), (O.S.), (O.C.), (OFF), (ON PHONE)..."""
    return any(extension.strip().upper() in OFFSCREEN for extension in re.findall(r"\(([^)]*)\)", cue))


def _cue_name(line: str) -> str:
    """The name in a character cue: no '@', no extensions like (V.O.) or (CONT'D), no dual '^'."""
    return line.rstrip().removesuffix("^").lstrip("@").split("(")[0].strip()


def _is_character(line: str) -> bool:
    if line.startswith("@"):
        return bool(_cue_name(line))
    name = _cue_name(line)
    # `BEGIN MONTAGE:`, `INTERCUT WITH:`, `SUPER:` are directions, not names
    return (bool(name) and name == name.upper() and any(c.isalpha() for c in name) and not name.endswith(":")
            and not line.startswith(("!", ">", "~", "=", "#", ".")) and not line.rstrip().endswith("TO:"))


def _is_ignored(line: str) -> bool:
    """Sections, synopses, page breaks, transitions and centred text: nothing a voice says or a picture shows."""
    return line.startswith(("#", "=", ">")) or (line.endswith("TO:") and line == line.upper())


def _read_action(lines: list[tuple[int, str]], i: int) -> tuple[int, list[str]]:
    paragraph = []
    while i < len(lines) and lines[i][1].strip():
        paragraph.append(_clean(lines[i][1].strip().removeprefix("!")))
        i += 1
    return i, [p for p in paragraph if p]


def _read_dialogue(lines: list[tuple[int, str]], i: int, scene: FountainScene, prompt: str | None) -> int:
    """Read a character cue and its dialogue block; a parenthetical after some words starts a new line."""
    number, cue = lines[i]
    character, dual = _cue_name(cue.strip()), cue.rstrip().endswith("^")
    speech = Speech(character, number, "", dual=dual, prompt=prompt, offscreen=_is_offscreen(cue))
    i += 1
    while i < len(lines) and (lines[i][1].strip() or lines[i][1] == "  "):
        line = lines[i][1].strip()
        if line.startswith("(") and line.endswith(")"):
            if speech.text:
                scene.speeches.append(speech)
                speech = Speech(character, number, "", offscreen=speech.offscreen)
            speech.hint = parse_parenthetical(line[1:-1])
        elif line:
            speech.text = f"{speech.text} {_clean(line.removeprefix('~'))}".strip()
        i += 1
    if speech.text:
        scene.speeches.append(speech)
    return i


def parse_parenthetical(inside: str) -> Hint:
    """'whispering, slowly' -> delivery words; 'beat' -> a pause; anything else is kept as the emotion."""
    hint, feelings = Hint(), []
    for written in (p.strip() for p in inside.split(",")):
        phrase = written.lower()
        words = [SYNONYMS.get(w, w) for w in PHRASES.get(phrase, phrase).split()]
        if phrase in PAUSES:
            hint.pause = PAUSES[phrase]
        elif words and all(w in VOCABULARY and w not in NOT_DELIVERY for w in words):
            hint.delivery += words
        elif written:
            feelings.append(written)  # as the writer wrote it, capitals included
    hint.emotion = ", ".join(feelings) or None
    return hint


def _clean(text: str) -> str:
    """Dialogue as it is spoken: no emphasis marks (*bold*, _underline_), escapes undone."""
    return re.sub(r"\\([*_\\])", r"\1", EMPHASIS.sub("", text)).strip()


# --- casting and writing --------------------------------------------------------------------

@dataclass
class ImportResult:
    output: Path
    scenes: int
    lines: int
    warnings: list[str]


CAST_FILE_KEYS = {"title", "video", "voice", "audio", "timing", "lexicon", "cast"}


IMPORT_HEADER = "# imported from "


def _imported_before(path: Path) -> bool:
    """The file is an earlier import's output (its first line says so), which importing again replaces."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.readline().startswith(IMPORT_HEADER)
    except OSError:
        return False


def import_fountain(script: Path, cast_file: Path, output: Path) -> ImportResult:
    """Cast a Fountain script from a cast file and write it as a screenplay that load_screenplay accepts."""
    from talkstudio.checks import load_screenplay
    from talkstudio.outputs import refuse_inputs_as_outputs, require_suffix
    from talkstudio.sourcemap import load_yaml

    refuse_inputs_as_outputs([output], [script, cast_file])
    require_suffix(output, (".yaml", ".yml"))
    if output.exists() and not _imported_before(output):
        raise InputError(Problem(f"{output} exists and was not written by `talkstudio import`: importing would "
                                 "replace it", hint="choose another -o, or move that file away"))
    parsed = parse_fountain(_read_text(script))
    cast_doc, source = load_yaml(cast_file)
    _check_cast_file(cast_doc, source, cast_file)
    speakers = _cast_speakers(parsed, cast_doc["cast"], script, cast_file)
    warnings = [f"{script}:{s.line_no}: scene '{s.heading}' has no dialogue; it is left out"
                for s in parsed.scenes if not s.speeches]
    warnings += [f"{script}:{s.left_out[0]}: {len(s.left_out)} action paragraph{'s' * (len(s.left_out) > 1)} after "
                 f"the last line of scene '{s.heading or 'the opening'}' (line{'s' * (len(s.left_out) > 1)} "
                 f"{', '.join(map(str, s.left_out))}) left out: no line is spoken over them"
                 for s in parsed.scenes if s.left_out]
    document = _screenplay_document(parsed, cast_doc, speakers, cast_file.parent, output.parent, script)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(f"{IMPORT_HEADER}{script.name} by `talkstudio import`, cast from {cast_file.name}\n"
                      + yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100),
                      encoding="utf-8")
    try:
        screenplay = load_screenplay(output)
    except InputError as error:
        raise InputError(error.problems + [Problem(
            f"the screenplay written from {script.name} and {cast_file.name} has the problems above", file=output,
            hint=f"the cast, voices and settings come from {cast_file}: fix them there and import again")]) from None
    return ImportResult(output, len(screenplay.scenes), sum(len(s.lines) for s in screenplay.scenes), warnings)


class _Dumper(yaml.SafeDumper):
    """Block style with list items indented under their key, as the examples are written."""

    def increase_indent(self, flow: bool = False, indentless: bool = False):
        return super().increase_indent(flow, False)


def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(Problem("file not found", file=file, hint="check the path")) from None
    except UnicodeDecodeError as e:
        raise InputError(Problem(f"not UTF-8 text ({e.reason} at byte {e.start})", file=file,
                                 hint="save the script as UTF-8")) from None
    except OSError as e:
        raise InputError(Problem(f"cannot read: {e.strerror}", file=file)) from None


def _check_cast_file(doc, source, file: Path) -> None:
    if not isinstance(doc, dict) or not isinstance(doc.get("cast"), dict) or not doc["cast"]:
        raise InputError(Problem("a cast file needs a `cast:` mapping of character ids", file=file,
                                 hint="e.g. cast: {ana: {name: Ana, image: ana.png, voice: ava}}"))
    unknown = [k for k in doc if k not in CAST_FILE_KEYS | {"scenes"}]
    if unknown:
        raise InputError([source.problem((k,), f"unknown field '{k}' in a cast file", prefer_key=True,
                                         hint=f"a cast file holds {', '.join(sorted(CAST_FILE_KEYS))}")
                          for k in unknown])


def _normal(name: str) -> str:
    return " ".join(re.sub(r"[^\w]+|_", " ", name.lower()).split())


def _cast_speakers(parsed: FountainScript, cast: dict, script: Path, cast_file: Path) -> dict[str, list[str]]:
    """Each character cue's cast ids (ids and names match case-insensitively; a joint cue `ANA AND BEN`
    has each of theirs, unless the whole cue is a cast name); every unknown one reported."""
    lookup = {}
    for cast_id, character in cast.items():
        lookup[_normal(str(cast_id))] = str(cast_id)
        if isinstance(character, dict) and character.get("name"):
            lookup.setdefault(_normal(str(character["name"])), str(cast_id))
    found, unknown = {}, {}
    for speech in (s for scene in parsed.scenes for s in scene.speeches):
        whole = lookup.get(_normal(speech.character))
        parts = [lookup.get(_normal(part)) for part in JOINT.split(speech.character)]
        ids = [whole] if whole else (parts if len(parts) > 1 and all(parts) else [])
        if not ids:
            unknown.setdefault(speech.character, []).append(speech.line_no)
        found[speech.character] = list(dict.fromkeys(ids))
    if unknown:
        names = ", ".join(f"{k} ({v['name']})" if isinstance(v, dict) and v.get("name") else str(k)
                          for k, v in cast.items())
        raise InputError([Problem(f"unknown character '{name}' (line{'s' if len(at) > 1 else ''} "
                                  f"{', '.join(map(str, sorted(set(at))))}); the cast has {names}",
                                  file=script, line=at[0],
                                  hint=f"add them under cast: in {cast_file}, or spell the cue as a cast id or name")
                          for name, at in unknown.items()])
    if not found:
        raise InputError(Problem("no dialogue found: nothing to speak", file=script,
                                 hint="a character cue is a line in capitals after a blank line, "
                                      "with the dialogue on the next lines"))
    return found


def _screenplay_document(parsed: FountainScript, cast_doc: dict, speakers: dict[str, str], cast_dir: Path,
                         out_dir: Path, script: Path) -> dict:
    document: dict = {"title": parsed.title or cast_doc.get("title") or script.stem}
    for key in ("video", "voice", "audio", "timing", "lexicon", "cast"):
        if key in cast_doc:
            document[key] = _rebase_paths(key, cast_doc[key], cast_dir, out_dir)
    document["scenes"] = []
    taken: set[str] = set()
    for number, scene in enumerate((s for s in parsed.scenes if s.speeches), start=1):
        entry: dict = {"id": _scene_id(scene.heading, number, taken)}
        if scene.prompt or scene.heading:
            entry["prompt"] = scene.prompt or scene.heading
        entry["lines"] = _lines(scene.speeches, speakers)
        document["scenes"].append(entry)
    return document


def _lines(speeches: list[Speech], speakers: dict[str, list[str]]) -> list[dict]:
    lines: list[dict] = []
    for speech in speeches:
        first, *together = speakers[speech.character]
        line = {first: speech.text}
        if speech.dual and lines and next(iter(lines[-1])) != first:
            line["overlap"] = DUAL_OVERLAP
        elif speech.hint.pause is not None and lines:
            line["pause"] = speech.hint.pause
        if speech.offscreen:
            line["offscreen"] = True
        if speech.hint.delivery:
            line["delivery"] = ", ".join(dict.fromkeys(speech.hint.delivery))
        if speech.hint.emotion:
            line["emotion"] = speech.hint.emotion
        if speech.prompt:
            line["prompt"] = speech.prompt
        lines.append(line)
        for other in together:  # a joint cue: the others say it with the first, all of it at once
            joined = {other: speech.text, "overlap": JOINT_OVERLAP}
            joined.update({k: v for k, v in line.items() if k in ("offscreen", "delivery", "emotion")})
            lines.append(joined)
    return lines


def _scene_id(heading: str | None, number: int, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", (heading or f"scene {number}").lower()).strip("-") or f"scene-{number}"
    chosen, n = base, 2
    while chosen in taken:
        chosen, n = f"{base}-{n}", n + 1
    taken.add(chosen)
    return chosen


def _rebase_paths(key: str, value, cast_dir: Path, out_dir: Path):
    """The cast file's relative paths (portraits, voice models and references, the InsightFace root),
    made relative to the written screenplay's folder instead."""
    def rebase(holder, name: str) -> None:
        path = holder.get(name) if isinstance(holder, dict) else None
        if isinstance(path, str) and not os.path.isabs(os.path.expanduser(path)):
            holder[name] = os.path.relpath((cast_dir / path).resolve(), out_dir.resolve())

    def rebase_voice(voice) -> None:
        rebase(voice, "model")
        rebase(voice, "reference")

    if key == "cast":
        for character in value.values():
            rebase(character, "image")
            rebase_voice(character.get("voice") if isinstance(character, dict) else None)
    elif key == "voice":
        rebase_voice(value)
    elif key == "video" and isinstance(value, dict):
        rebase(value.get("faces"), "insightface_root")
    return value
