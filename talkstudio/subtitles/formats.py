"""Subtitle events into SRT, WebVTT and ASS, written by pysubs2.

Only what each format shows of an event is ours: SRT (and the mp4's mov_text track made from
it) gets events that never overlap and a colour per speaker; WebVTT gets voice tags, a CSS class
and colour per speaker (a STYLE block) and, for karaoke captions, a timestamp before each word
(`::cue(:future)` dims the words not yet said); ASS gets a style per speaker, bold name labels,
karaoke timing (`\\k`) and, when asked, a position under the speaker's face.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from talkstudio.subtitles.rules import Rules
from talkstudio.subtitles.segment import Event, Part, Token, flattened

COLOURS = ["#ffffff", "#ffe066", "#7fdbff", "#ff9f80", "#b8f28c", "#f5a3ff", "#ffc04d", "#9fb8ff"]
RIGHT_TO_LEFT_MARK = "\u200f"  # starts each right-to-left line, so players lay it out right to left
UNLIT = "#9a9a9a"  # karaoke: words not yet said
FONT_SCALE = {"plain": 0.055, "karaoke": 0.065, "pop": 0.085}  # font size by caption style, of the picture height
MARGIN_SCALE = {"plain": 0.05, "karaoke": 0.08, "pop": 0.18}  # bottom margin: social captions sit higher


@dataclass
class Layout:
    """What the formats need besides the events."""

    speakers: list[tuple[str, str]]  # (id, display name), in the order colours are given
    size: tuple[int, int]
    rules: Rules
    font: str = "DejaVu Sans"
    # scene id -> speaker -> x of the face's centre, for `position: speaker` (multi-person shots only)
    faces: dict[str | None, dict[str, float]] = field(default_factory=dict)
    top: float | None = None  # captions at the top, this share of the height down (default: at the bottom)

    @property
    def colours(self) -> dict[str, str]:
        return {speaker: COLOURS[i % len(COLOURS)] for i, (speaker, _) in enumerate(self.speakers)}


def to_srt(events: list[Event], layout: Layout) -> str:
    import pysubs2  # here, not at import: the screenplay's checks load this package on every command

    subs = pysubs2.SSAFile()
    coloured = len(layout.speakers) > 1
    for event in flattened(events, layout.rules):
        lines = []
        for part in event.parts:
            for line in _lines(part, event, layout.rules, "<b>{}</b>", _plain):
                lines.append(f'<font color="{layout.colours[part.speaker]}">{line}</font>' if coloured else line)
        subs.append(_event(event, "\\N".join(lines)))
    return subs.to_string("srt")


def to_vtt(events: list[Event], layout: Layout) -> str:
    import pysubs2

    subs = pysubs2.SSAFile()
    for event in events:
        parts = [f"<v {_vtt_escape(part.name)}><c.{_css_class(part.speaker)}>{_vtt_part(part, event, layout.rules)}</c></v>"
                 for part in event.parts]
        subs.append(_event(event, "\\N".join(parts)))
    text = subs.to_string("vtt")
    head, _, body = text.partition("\n\n")
    return f"{head}\n\n{_vtt_style(layout)}\n\n{body}"


def to_ass(events: list[Event], layout: Layout) -> str:
    import pysubs2

    subs = pysubs2.SSAFile()
    width, height = layout.size
    style = layout.rules.captions
    # the letters' size by style, smaller where a full line would not fit the width (a narrow picture)
    font_size = round(min(height * FONT_SCALE[style], width * 0.9 / (0.55 * layout.rules.max_chars)))
    margin = round(height * (layout.top if layout.top is not None else MARGIN_SCALE[style]))
    alignment = pysubs2.Alignment.TOP_CENTER if layout.top is not None else pysubs2.Alignment.BOTTOM_CENTER
    subs.info.update({"PlayResX": str(width), "PlayResY": str(height), "WrapStyle": "2",
                      "ScaledBorderAndShadow": "yes"})
    subs.styles.clear()
    for speaker, _ in layout.speakers:
        subs.styles[speaker] = pysubs2.SSAStyle(
            fontname=layout.font, fontsize=font_size, bold=style != "plain",
            primarycolor=_colour(layout.colours[speaker]), secondarycolor=_colour(UNLIT),
            outlinecolor=pysubs2.Color(16, 16, 16), backcolor=pysubs2.Color(0, 0, 0, 128),
            outline=max(1, font_size // (8 if style != "plain" else 12)), shadow=1,
            alignment=alignment, marginl=round(width * 0.05), marginr=round(width * 0.05),
            marginv=margin,
            encoding=-1 if layout.rules.right_to_left else 1)  # -1: libass finds each line's direction
    for event in events:
        parts = [_ass_part(part, event, layout, i > 0) for i, part in enumerate(event.parts)]
        line = _ass_position(event, layout, margin) + "\\N".join(parts)
        subs.append(_event(event, line, style=event.parts[0].speaker, name=_ass_field(event.parts[0].name)))
    return subs.to_string("ass")


def _event(event: Event, text: str, **fields):
    import pysubs2

    return pysubs2.SSAEvent(start=round(event.start * 1000), end=round(event.end * 1000), text=text, **fields)


def _lines(part: Part, event: Event, rules: Rules, bold: str, escape) -> list[str]:
    """The part's lines as shown (text escaped for the format): a dash when two speak in the event,
    the name label on the first line."""
    lines = [escape(line) for line in part.lines]
    lines[0] = _lead(part, event, rules, bold, escape) + lines[0]
    return [_direction_mark(part, rules) + line for line in lines]


def _direction_mark(part: Part, rules: Rules) -> str:
    """A right-to-left mark for the part's lines when they are right to left: its text starts so, in a
    script written so. A Latin name label before it would otherwise turn the line left to right, and an
    English line in a Hebrew script keeps its own direction."""
    import unicodedata

    if not rules.right_to_left:
        return ""
    strong = next((unicodedata.bidirectional(c) for line in part.lines for c in line
                   if unicodedata.bidirectional(c) in ("L", "R", "AL")), "L")
    return RIGHT_TO_LEFT_MARK if strong in ("R", "AL") else ""


def _lead(part: Part, event: Event, rules: Rules, bold: str, escape) -> str:
    lead = bold.format(escape(part.name) + ":") + " " if part.label else ""
    return (_dash(rules) if len(event.parts) > 1 else "") + lead


def _dash(rules: Rules) -> str:
    return "-" if rules.english else "- "  # English style sets the dash without a space


def _plain(text: str) -> str:
    """Text pysubs2 passes through as written: braces would be read as ASS override tags."""
    return text.replace("{", "｛").replace("}", "｝")


# --- WebVTT ---------------------------------------------------------------------------------

def _vtt_part(part: Part, event: Event, rules: Rules) -> str:
    if rules.captions != "karaoke":
        return "\\N".join(_lines(part, event, rules, "<b>{}</b>", _vtt_escape))
    # a timestamp before each word (inside the cue's time) lets a player light the words in turn
    words = []
    for i, token in enumerate(part.tokens):
        stamp = f"<{timestamp(min(max(token.start, event.start), event.end))}>" if i else ""
        words.append((" " if token.spaced and i else "") + stamp + _vtt_escape(token.text))
    return _direction_mark(part, rules) + _lead(part, event, rules, "<b>{}</b>", _vtt_escape) + "".join(words)


def _vtt_escape(text: str) -> str:
    return _plain(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def timestamp(seconds: float, separator: str = ".") -> str:
    """HH:MM:SS.mmm (SRT wants a comma before the milliseconds)."""
    ms = int(round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{separator}{ms:03d}"


def _css_class(speaker: str) -> str:
    return f"s-{speaker}"  # a class may not start with a digit; cast ids may


def _vtt_style(layout: Layout) -> str:
    rules = [f"::cue(.{_css_class(speaker)}) {{ color: {colour}; }}" for speaker, colour in layout.colours.items()]
    if layout.rules.captions == "karaoke":
        rules.append(f"::cue(:future) {{ color: {UNLIT}; }}")
    return "STYLE\n" + "\n".join(rules)


# --- ASS ------------------------------------------------------------------------------------

def _ass_part(part: Part, event: Event, layout: Layout, recoloured: bool) -> str:
    colour = f"{{\\c{_ass_colour(layout.colours[part.speaker])}}}" if recoloured else ""
    bold = "{{\\b1}}{}{{\\b0}}"
    if layout.rules.captions != "karaoke":
        return colour + "\\N".join(_lines(part, event, layout.rules, bold, _ass_escape))
    return (colour + _direction_mark(part, layout.rules) + _lead(part, event, layout.rules, bold, _ass_escape)
            + _karaoke(part.tokens, event))


def _karaoke(tokens: list[Token], event: Event) -> str:
    """`\\k` before each word: the centiseconds until it is said light it (SecondaryColour -> PrimaryColour)."""
    words, at = [], event.start
    for i, token in enumerate(tokens):
        until = tokens[i + 1].start if i + 1 < len(tokens) else token.end
        begins = min(max(token.start, at), event.end)
        wait = round((begins - at) * 100)
        if wait > 0:
            words.append(f"{{\\k{wait}}}")
        duration = max(round((min(until, event.end) - begins) * 100), 1)
        words.append((" " if token.spaced and i else "") + f"{{\\k{duration}}}" + _ass_escape(token.text))
        at = begins + duration / 100
    return "".join(words)


def _ass_position(event: Event, layout: Layout, margin: int) -> str:
    """Under the speaker's face, in a shot of several people, when asked."""
    faces = layout.faces.get(event.scene, {})
    if layout.rules.position != "speaker" or len(faces) < 2 or len(event.parts) > 1:
        return ""
    x = faces.get(event.parts[0].speaker)
    if x is None:
        return ""
    width, height = layout.size
    x = min(max(x, width * 0.2), width * 0.8)  # the text stays inside the picture
    return f"{{\\an2\\pos({round(x)},{height - margin})}}"


def _ass_escape(text: str) -> str:
    return _plain(text).replace("\\", "\\\\")


def _colour(hex_colour: str):
    import pysubs2

    return pysubs2.Color(*(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)))


def _ass_colour(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"&H{b:02X}{g:02X}{r:02X}&"


def _ass_field(text: str) -> str:
    """A value for a comma-separated ASS field: a comma would end the field early (libass then reads the
    rest of a name as the subtitle's text), so it becomes a low quotation mark that looks like one."""
    return text.replace(",", "\u201a").replace("\n", " ")
