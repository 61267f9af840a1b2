"""Subtitles by the timed-text rules: segmentation, timing, speakers, overlaps, languages, fonts, captions."""

import re

import pysubs2
import pytest

from talkstudio.errors import InputError
from talkstudio.screenplay import SubtitleSettings
from talkstudio.subtitles import Layout, events_of, rules_for, track_language
from talkstudio.subtitles.formats import to_ass, to_srt, to_vtt
from talkstudio.subtitles.rules import Rules
from talkstudio.subtitles.segment import flattened

FPS = 25.0
EN = Rules("en", 42, 2, 20.0, 5 / 6, 7.0, 2 / FPS, 12 / FPS)


def _cue(text, start, seconds_per_word=0.3, speaker="ana", scene="s1", end=None):
    words, t = [], start
    for word in text.split():
        words.append({"text": word.strip('.,!?"'), "start": t, "end": t + seconds_per_word * 0.85})
        t += seconds_per_word
    return {"text": text, "start": start, "end": end if end is not None else t, "speaker": speaker, "scene": scene,
            "words": words}


def _doc(cues, scenes=(("s1", 0.0, 600.0),), names=None):
    speakers = sorted({c["speaker"] for c in cues})
    names = names or {s: s.title() for s in speakers}
    return {"speakers": [{"id": s, "name": names[s]} for s in speakers], "cues": cues,
            "scenes": [{"id": i, "start": a, "end": b} for i, a, b in scenes]}


def _events(cues, rules=EN, **doc):
    return events_of(_doc(cues, **doc), rules)


def _text(event):
    return " ".join(line for part in event.parts for line in part.lines)


LONG = ("Well, I never thought we would find the old lighthouse keeper's logbook under the floorboards, "
        "but there it was, wrapped in oilcloth and tied with a piece of tarred string. The last entry was "
        "written on the night of the great storm, and it ends in the middle of a sentence.")


def test_rules_default_by_language_and_tag_the_track():
    class Voice:
        language = None

    class Character:
        voice = Voice()

    class Script:
        subtitles, cast = SubtitleSettings(), {"a": Character()}

        def __init__(self, language):
            self.language = language

    assert (rules_for(Script(None), 25).max_chars, rules_for(Script(None), 25).max_cps) == (42, 20.0)
    assert (rules_for(Script("de"), 25).max_chars, rules_for(Script("de"), 25).max_cps) == (42, 17.0)
    assert (rules_for(Script("ja"), 25).max_chars, rules_for(Script("ja"), 25).max_cps) == (13, 4.0)
    assert (rules_for(Script("zh-Hans"), 25).max_chars, rules_for(Script("ko"), 25).max_cps) == (16, 12.0)
    assert rules_for(Script(None), 24).min_gap == pytest.approx(2 / 24)
    assert [track_language(t) for t in ("en-us", "de", "ja", "zh-Hans", "he")] == ["eng", "deu", "jpn", "zho", "heb"]


def test_long_lines_become_subtitles_within_every_limit_and_keep_every_word():
    events = _events([_cue(LONG, 1.0, 0.32)])
    assert len(events) > 2
    for event in events:
        lines = [line for part in event.parts for line in part.lines]
        assert len(lines) <= 2 and all(len(line) <= 42 for line in lines), lines
        assert event.end - event.start <= 7.0 + 1e-9
        assert event.end - event.start >= 5 / 6 - 1e-9
        assert all(len(line.split()) > 1 for line in lines), lines  # no one-word orphan line
        assert len(_text(event).split()) > 1  # no one-word subtitle
    assert " ".join(_text(e) for e in events).split() == LONG.split()
    for a, b in zip(events, events[1:]):
        assert b.start - a.end >= 2 / FPS - 1e-9


def test_lines_break_at_phrase_boundaries():
    event = _events([_cue("I would like to go down to the harbour, but the weather is terrible today.", 1.0)])[0]
    assert event.parts[0].lines == ["I would like to go down to the harbour,", "but the weather is terrible today."]
    event = _events([_cue("She put the heavy brass key back into the drawer of the desk by the window.", 1.0)])[0]
    first = event.parts[0].lines[0].split()
    assert first[-1].lower() not in {"the", "a", "an", "of", "into", "she"}  # never after an article or preposition


def test_a_subtitle_holds_one_sentence_where_it_can():
    events = _events([_cue("I climbed up last time. And the time before that, if anyone is counting.", 1.0)])
    assert [_text(e) for e in events] == ["I climbed up last time.", "And the time before that, if anyone is counting."]


def test_short_replies_never_flash():
    cues = [_cue("Gold.", 1.0, 0.4), _cue("Which is?", 1.6, 0.25, "ben"), _cue("Nothing much.", 2.4, 0.3)]
    events = _events(cues)
    assert all(e.end - e.start >= 5 / 6 - 1e-9 for e in events)
    dual = [e for e in events if len(e.parts) == 2]
    assert dual, [(_text(e), e.start, e.end) for e in events]
    assert " ".join(_text(e) for e in events).split() == "Gold. Which is? Nothing much.".split()


def test_subtitles_stay_on_into_silence_for_their_reading_time():
    text = "Extraordinary circumstances require extraordinary measures."  # 59 characters
    event = _events([_cue(text, 1.0, 0.25)])[0]
    assert event.end - event.start >= len(text) / 20.0 - 1e-9
    assert event.end > 1.0 + 5 * 0.25  # past the speech


def test_small_gaps_close_to_two_frames_and_no_subtitle_crosses_a_cut():
    cues = [_cue("The lamp has gone out again.", 0.3, 0.3, scene="a"), _cue("Someone must fix it.", 2.55, 0.3, scene="a"),
            _cue("In the morning we will.", 4.1, 0.3, scene="b")]
    events = _events(cues, scenes=(("a", 0.0, 3.9), ("b", 3.9, 9.0)))
    first, second, third = events
    assert first.start == 0.0  # in at the cut (0.3 s is within 12 frames)
    assert second.start - first.end == pytest.approx(2 / FPS)  # the 0.6 s gap closed
    assert second.end <= 3.9 - 2 / FPS + 1e-9 and second.end == pytest.approx(3.9 - 2 / FPS)  # out at the cut
    assert third.start == 3.9 and third.scene == "b"


def test_names_are_labelled_first_always_or_never():
    cues = [_cue("Hello there.", 1.0), _cue("Hi.", 3.0, speaker="ben"), _cue("How are you?", 5.0),
            _cue("Fine.", 7.0, speaker="ben", scene="s2")]
    scenes = (("s1", 0.0, 6.5), ("s2", 6.5, 20.0))
    first = _events(cues, scenes=scenes)
    assert [p.label for e in first for p in e.parts] == [True, True, False, True]
    always = _events(cues, rules=Rules(**{**EN.__dict__, "names": "always"}), scenes=scenes)
    assert all(p.label for e in always for p in e.parts)
    never = _events(cues, rules=Rules(**{**EN.__dict__, "names": "never"}), scenes=scenes)
    assert not any(p.label for e in never for p in e.parts)
    alone = _events([_cue("Once upon a time.", 1.0)])
    assert not alone[0].parts[0].label  # one speaker: nobody to tell apart


def _layout(doc, rules=EN):
    return Layout([(s["id"], s["name"]) for s in doc["speakers"]], (832, 480), rules)


def test_overlapping_speech_is_shown_in_every_format():
    long = _cue("The point is that the ladder is older than all three of us put together, and", 10.0, 0.3)
    cut_in = _cue("Bo.", 12.5, 0.5, speaker="ada")
    doc = _doc([long, cut_in], names={"ana": "Bo", "ada": "Ada"})
    events = events_of(doc, EN)
    srt = pysubs2.SSAFile.from_string(to_srt(events, _layout(doc)))
    spans = sorted((e.start, e.end) for e in srt.events)
    assert all(b[0] - a[1] >= 80 for a, b in zip(spans, spans[1:]))  # SRT and mov_text: never two at once
    both = [e for e in srt.events if "Bo." in e.plaintext]
    assert both and all(re.search(r"^-.*\n-(Ada: )?Bo\.$", e.plaintext) for e in both)  # a dash per speaker
    assert all(len(e.plaintext.splitlines()) <= 2 for e in srt.events)
    for text in (to_vtt(events, _layout(doc)), to_ass(events, _layout(doc))):
        shown = pysubs2.SSAFile.from_string(text)
        assert any("Bo." in e.plaintext for e in shown.events) and any("ladder" in e.plaintext for e in shown.events)


def test_webvtt_names_voices_and_colours_each_speaker():
    doc = _doc([_cue("Hello <there> & you.", 0.5), _cue("Hi!", 2.5, speaker="ben")])
    vtt = to_vtt(events_of(doc, EN), _layout(doc))
    assert vtt.startswith("WEBVTT\n\nSTYLE\n::cue(.s-ana) { color: #ffffff; }\n::cue(.s-ben) { color: #ffe066; }")
    assert "<v Ana><c.s-ana><b>Ana:</b> Hello &lt;there&gt; &amp; you.</c></v>" in vtt
    assert "<v Ben><c.s-ben><b>Ben:</b> Hi!</c></v>" in vtt
    ass = to_ass(events_of(doc, EN), _layout(doc))
    assert "Style: ana,DejaVu Sans" in ass and "&H0066E0FF" in ass and ",ben,Ben," in ass
    srt = to_srt(events_of(doc, EN), _layout(doc))
    assert '<font color="#ffe066"><b>Ben:</b> Hi!</font>' in srt


def test_karaoke_lights_each_word_when_it_is_said():
    doc = _doc([_cue("Every word lights up in turn.", 1.0, 0.4)])
    rules = Rules(**{**EN.__dict__, "captions": "karaoke"})
    events = events_of(doc, rules)
    ass = pysubs2.SSAFile.from_string(to_ass(events, _layout(doc, rules)))
    text = ass.events[0].text
    durations = [int(d) for d in re.findall(r"\\k(\d+)", text)]
    assert len(re.findall(r"\\k\d+\}\w", text)) == 6 and sum(durations) * 10 <= ass.events[0].duration + 10
    vtt = to_vtt(events, _layout(doc, rules))
    stamps = re.findall(r"<(\d\d):(\d\d):(\d\d)\.(\d{3})>", vtt)
    seconds = [int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000 for h, m, s, ms in stamps]
    assert len(seconds) == 5 and seconds == sorted(seconds) and 1.0 <= seconds[0] and seconds[-1] <= events[0].end
    assert "::cue(:future)" in vtt


def test_pop_captions_show_one_to_three_words_as_they_are_said():
    rules = Rules(**{**EN.__dict__, "captions": "pop"})
    events = _events([_cue(LONG, 1.0, 0.3)], rules=rules)
    assert all(1 <= len(_text(e).split()) <= 3 for e in events)
    assert " ".join(_text(e) for e in events).split() == LONG.split()
    assert all(b.start - a.end >= 2 / FPS - 1e-9 for a, b in zip(events, events[1:]))


def test_japanese_lines_are_thirteen_wide_and_never_start_with_punctuation():
    rules = Rules("ja", 13, 2, 4.0, 5 / 6, 7.0, 2 / FPS, 12 / FPS)
    text = "灯台の明かりは真夜中からずっと点滅している。誰かが上に登って見てこないといけない。"
    cue = {"text": text, "start": 1.0, "end": 9.0, "speaker": "ana", "scene": "s1", "words": []}
    events = _events([cue], rules=rules)
    lines = [line for e in events for part in e.parts for line in part.lines]
    assert "".join(lines) == text
    assert all(len(line) <= 13 for line in lines) and not any(line[0] in "。、！？" for line in lines)
    assert all(len(e.parts[0].lines) <= 2 for e in events)


def test_flattened_events_never_lose_a_speaker():
    doc = _doc([_cue("Now that I think about it, we should have left an hour ago.", 1.0, 0.3),
                _cue("Yes.", 2.0, 0.2, speaker="ben")])
    flat = flattened(events_of(doc, EN), EN)
    assert any("Yes." in _text(e) for e in flat)
    assert all(b.start - a.end >= 2 / FPS - 1e-9 for a, b in zip(flat, flat[1:]))


def test_a_font_is_chosen_that_has_every_character(tmp_path):
    from talkstudio.subtitles import fonts

    latin = fonts.burn_font("Hello, Zoë!")
    assert "a" and ord("ë") in fonts._characters(str(latin.path))
    rare = "\U00016a40\U00016a41"  # Mro: no font here has it
    with pytest.raises(InputError, match="Mro"):
        fonts.burn_font(f"Hello {rare}")
    made = _font_with(tmp_path / "mro.ttf", rare)
    chosen = fonts.burn_font(f"{rare}", made)
    assert chosen.path == made and chosen.family == "Test Mro"
    assert made.parent == fonts.font_folders(chosen)[0]
    assert fonts.burnable_scripts()["Latin"]


def _font_with(path, characters):
    from fontTools.fontBuilder import FontBuilder
    from fontTools.pens.ttGlyphPen import TTGlyphPen

    names = [".notdef"] + [f"g{ord(c):x}" for c in characters]
    builder = FontBuilder(1000, isTTF=True)
    builder.setupGlyphOrder(names)
    builder.setupCharacterMap({ord(c): f"g{ord(c):x}" for c in characters})
    pen = TTGlyphPen(None)
    pen.moveTo((100, 0)), pen.lineTo((100, 700)), pen.lineTo((600, 700)), pen.lineTo((600, 0)), pen.closePath()
    glyph = pen.glyph()
    builder.setupGlyf({name: glyph for name in names})
    builder.setupHorizontalMetrics({name: (700, 100) for name in names})
    builder.setupHorizontalHeader(ascent=800, descent=-200)
    builder.setupNameTable({"familyName": "Test Mro", "styleName": "Regular"})
    builder.setupOS2()
    builder.setupPost()
    builder.save(str(path))
    return path


SCRIPT = """\
language: {language}
video: {{size: 320x240}}
subtitles: {{captions: {captions}}}
cast:
  ana: {{name: Ana, image: ana.png, voice: {{id: ava}}}}
  ben: {{name: Ben, image: ben.png, voice: {{id: dan}}}}
scenes:
  - lines:
      - ana: {first}
      - ben: {second}
        overlap: 0.8
"""


def _render(tmp_path, *extra, language="de", captions="plain", first="Guten Morgen, das ist ein kurzer Test.",
            second="Und das ist die Antwort."):
    import shutil

    from conftest import ROOT, run_cli

    shutil.copy(ROOT / "casts" / "maya.png", tmp_path / "ana.png")
    shutil.copy(ROOT / "casts" / "theo.png", tmp_path / "ben.png")
    script = tmp_path / "s.yaml"
    script.write_text(SCRIPT.format(language=language, captions=captions, first=first, second=second),
                      encoding="utf-8")
    result = run_cli("render", script, "-o", tmp_path / "o.mp4", "--cache", tmp_path / "c", "-q", *extra)
    return result, tmp_path / "o.mp4"


def test_the_mp4_subtitle_track_has_the_script_language_and_every_overlapping_cue_whole(tmp_path):
    import subprocess

    from talkstudio.audio_io import ffmpeg_exe

    result, video = _render(tmp_path, first="Guten Morgen, das ist ein kurzer Test unseres neuen Programms für "
                                             "Untertitel in zwei Zeilen.")
    assert result.returncode == 0, result.stderr
    report = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(video)], capture_output=True, text=True).stderr
    assert re.search(r"Stream #0:2(\[0x\w+\])?\(deu\): Subtitle: mov_text", report), report
    track = tmp_path / "track.srt"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(video), "-map", "0:s:0", str(track)],
                   check=True)
    inside = [(e.start, e.end, e.plaintext) for e in pysubs2.load(str(track)).events]
    beside = [(e.start, e.end, e.plaintext) for e in pysubs2.load(str(video.with_suffix(".srt"))).events]
    assert len(inside) == len(beside) >= 2
    for (a0, a1, a_text), (b0, b1, b_text) in zip(inside, beside):
        assert abs(a0 - b0) <= 20 and abs(a1 - b1) <= 20 and a_text == b_text  # nothing cut short
    assert any(text.startswith("-") and "\n-" in text for _, _, text in beside)  # the overlap: both, with dashes


def test_burning_text_no_font_has_is_refused_before_rendering(tmp_path):
    result, video = _render(tmp_path, "--burn-subtitles", language="en", first="Hello \U00016a40\U00016a41.")
    assert result.returncode == 2 and "no font" in result.stderr and "Mro" in result.stderr, result.stderr
    assert not video.exists() and not (tmp_path / "c").exists()  # refused before any work


def test_burned_right_to_left_subtitles_are_drawn(tmp_path):
    from talkstudio.assemble import read_frames

    result, video = _render(tmp_path, "--burn-subtitles", "--captions", "pop", language="he",
                            first="שלום, זה מבחן קצר.", second="וזו התשובה.")
    assert result.returncode == 0, result.stderr
    frames = list(read_frames(video, (320, 240)))
    bottom = [frame[150:220].astype(int) for frame in frames[10:40]]
    # burned text: white and outline pixels well apart from the stage's, in the lower part of the picture
    assert max(((b.max(axis=2) > 235) & (b.min(axis=2) > 200)).sum() for b in bottom) > 40


def test_right_to_left_lines_are_laid_out_right_to_left_by_libass(tmp_path):
    """Our ASS for a Hebrew line, drawn by libass, matches the visual order the Unicode bidi algorithm
    gives (python-bidi), drawn left to right as it stands."""
    import subprocess

    import numpy as np
    from bidi.algorithm import get_display

    from talkstudio.audio_io import ffmpeg_exe

    rules = Rules("he", 42, 2, 17.0, 5 / 6, 7.0, 2 / FPS, 12 / FPS, names="always")
    doc = _doc([_cue("שלום, זה מבחן.", 0.0, 0.3, speaker="ana")], names={"ana": "אנה"})
    ours = to_ass(events_of(doc, rules), Layout([("ana", "אנה")], (1280, 720), rules))
    expected = get_display("אנה: שלום, זה מבחן.", base_dir="R")
    as_drawn = re.sub(r"(Dialogue: [^\n]*,,).*", lambda m: m.group(1) + "\u202d" + expected + "\u202c", ours)

    def draw(ass_text, name):
        (tmp_path / f"{name}.ass").write_text(ass_text.replace("{\\b1}", "").replace("{\\b0}", ""), encoding="utf-8")
        subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "color=black:s=1280x720:d=1", "-vf",
                        f"subtitles={name}.ass", "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray",
                        f"{name}.raw"], check=True, cwd=tmp_path)
        return np.fromfile(tmp_path / f"{name}.raw", np.uint8).reshape(720, 1280).astype(int)

    drawn, reference = draw(ours, "ours"), draw(as_drawn, "reference")
    reversed_words = draw(re.sub(r"(Dialogue: [^\n]*,,).*", lambda m: m.group(1) + "\u202d" + expected[::-1] + "\u202c",
                                 ours), "wrong")

    def differs(a, b):  # the share of the ink that is not in the same place
        return np.abs(a - b).sum() / max(a.sum(), 1)

    assert (drawn > 128).sum() > 500  # something was drawn
    assert differs(drawn, reference) < 0.05
    assert differs(drawn, reversed_words) > 0.5  # the comparison can tell the orders apart


def test_burned_subtitles_can_sit_under_whoever_speaks():
    rules = Rules(**{**EN.__dict__, "position": "speaker"})
    doc = _doc([_cue("Hello there.", 1.0), _cue("Hi.", 3.0, speaker="ben")])
    layout = Layout([("ana", "Ana"), ("ben", "Ben")], (832, 480), rules, faces={"s1": {"ana": 200.0, "ben": 640.0}})
    ass = pysubs2.SSAFile.from_string(to_ass(events_of(doc, rules), layout))
    positions = [re.search(r"\\pos\((\d+),(\d+)\)", e.text).groups() for e in ass.events]
    assert [int(x) for x, _ in positions] == [200, 640] and all(int(y) > 400 for _, y in positions)
    alone = Layout([("ana", "Ana"), ("ben", "Ben")], (832, 480), rules, faces={"s1": {"ana": 200.0}})
    assert "\\pos" not in to_ass(events_of(doc, rules), alone)  # one person in the shot: at the bottom centre


def test_shown_lines_fit_with_their_name_labels_and_dashes():
    cues = [_cue("How does it feel, on the morning of a launch?", 0.3), _cue("Calm, mostly.", 3.2, speaker="eileen"),
            _cue("Really?", 4.0), _cue("Really. By now every step has been practised a hundred times.", 4.6,
                                        speaker="eileen")]
    for names in ("first", "always"):
        rules = Rules(**{**EN.__dict__, "names": names})
        doc = _doc(cues, names={"ana": "Theodora", "eileen": "Eileen"})
        for kind in (to_srt, to_vtt, to_ass):
            shown = pysubs2.SSAFile.from_string(kind(events_of(doc, rules), _layout(doc, rules)))
            lines = [line for e in shown.events for line in e.plaintext.splitlines()]
            assert lines and all(len(line.lstrip("\u200f")) <= 42 for line in lines), (names, kind, lines)


def test_the_same_words_said_together_are_shown_once_with_both_names():
    cues = [_cue("Hello there.", 0.5), _cue("Salt!", 3.0, 0.4, speaker="ben"), _cue("Salt!", 3.0, 0.4)]
    events = _events(cues, names=None)
    salt = [e for e in events if "Salt!" in _text(e)]
    assert len(salt) == 1 and len(salt[0].parts) == 1
    assert salt[0].parts[0].label and salt[0].parts[0].name in ("Ana & Ben", "Ben & Ana")


def test_a_left_to_right_line_in_a_right_to_left_script_keeps_its_direction():
    rules = Rules("he", 42, 2, 17.0, 5 / 6, 7.0, 2 / FPS, 12 / FPS, names="always")
    doc = _doc([_cue("שלום, זה מבחן.", 0.0), _cue("And this is the answer.", 2.0, speaker="ben")],
               names={"ana": "אנה", "ben": "Ben"})
    events = events_of(doc, rules)
    for text in (to_srt(events, _layout(doc, rules)), to_vtt(events, _layout(doc, rules)),
                 to_ass(events, _layout(doc, rules))):
        lines = [line for e in pysubs2.SSAFile.from_string(text).events for line in e.plaintext.splitlines()]
        hebrew = [line for line in lines if "שלום" in line]
        english = [line for line in lines if "answer" in line]
        assert hebrew and all(line.startswith("\u200f") for line in hebrew)
        assert english and not any("\u200f" in line for line in english)  # no mark turning it right to left
