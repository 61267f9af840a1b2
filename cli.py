"""The `talkstudio` command. Commands parse options and call talkstudio; no logic lives here."""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from talkstudio import __version__
from talkstudio.errors import InputError

app = typer.Typer(
    name="talkstudio",
    help="Turn a written dialogue into a talking video.\n\n"
    "A YAML screenplay (cast with portraits and voices, scenes, lines) is spoken by TTS into "
    "one track per speaker on one timeline, then rendered and assembled into an mp4.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
# piped output is read in logs and CI: give tables room instead of rich's 80-column default
# emoji codes off: a place such as "file.yaml:100:9" must not become an emoji
out = Console(width=None if sys.stdout.isatty() else 120, emoji=False)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 120, emoji=False)

ScriptArg = Annotated[Path, typer.Argument(help="screenplay YAML file", show_default=False)]
CacheOpt = Annotated[Optional[Path], typer.Option("--cache", help="cache folder (default: $TALKSTUDIO_CACHE or ~/.cache/talkstudio)")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="redo everything (results are still stored)")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="print only warnings and errors")]


class Captions(str, Enum):
    plain = "plain"
    karaoke = "karaoke"
    pop = "pop"


CaptionsOpt = Annotated[Optional[Captions], typer.Option(
    "--captions", help="subtitle style, over subtitles.captions: plain, karaoke (each word lit as it is said) or pop "
                       "(one to three words at a time)")]


def _version(value: bool) -> None:
    if value:
        out.print(f"talkstudio {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="show the version and exit")] = False,
) -> None:
    pass


@app.command()
def validate(scripts: Annotated[list[Path], typer.Argument(help="screenplay YAML files", show_default=False)]) -> None:
    """Check screenplays without doing any work: YAML, fields, speakers, files, voices.

    Every problem is listed with file:line:column, the field and how to fix it.
    Exit code 0 when all are fine, 2 when any is not.
    """
    from talkstudio.checks import load_screenplay
    from talkstudio.generators import frame_rate

    failed = []
    for script in scripts:
        try:
            s = load_screenplay(script)
        except InputError as error:
            failed.append(error)
            continue
        lines = sum(len(scene.lines) for scene in s.scenes)
        out.print(f"[green]ok[/green] {escape(str(script))}: '{escape(s.title)}', {len(s.cast)} characters, "
                  f"{len(s.scenes)} scenes, {lines} lines, backend {s.video.backend} at {frame_rate(s.video):g} fps",
                  highlight=False, soft_wrap=True)
    if failed:
        raise InputError([problem for error in failed for problem in error.problems])


@app.command()
def audio(
    script: ScriptArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="output folder")] = Path("talkstudio-out"),
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Speak every line and lay out the timeline: tracks/<speaker>.wav, mix.wav, cues.json.

    Tracks are concat-padded: one per cast member, all the timeline's length,
    exact zeros outside that speaker's lines. The mix is their sum, normalised
    to the screenplay's loudness target. cues.json holds every line's speaker,
    text, start/end in seconds, samples and frames, and word timings.
    """
    from talkstudio.cache import Cache
    from talkstudio.progress import Reporter
    from talkstudio.render import render_audio

    result = render_audio(script, output, Cache(cache, enabled=not no_cache), Reporter(quiet=quiet))
    if not quiet:
        _print_timeline(result)


def _print_timeline(result) -> None:
    doc = result.cues
    names = {s["id"]: s["name"] for s in doc["speakers"]}
    table = Table(box=box.SIMPLE_HEAD, title=f"{escape(doc['title'])}: {doc['duration']:.2f} s, {doc['frames']} frames at "
                        f"{doc['fps']:g} fps, {doc['sample_rate']} Hz")
    rows = [[escape(cue["scene"]), str(cue["line"] + 1), escape(names[cue["speaker"]]), f"{cue['start']:.2f}",
             f"{cue['end']:.2f}", f"{cue['start_frame']}-{cue['end_frame']}",
             escape(cue["text"] if not cue["audio"] else f"[recorded] {cue['text']}")] for cue in doc["cues"]]
    # numbers are never cut: their columns keep their width, and the text wraps in what is left
    for index, (column, justify) in enumerate((("scene", "left"), ("#", "right"), ("speaker", "left"),
                                               ("start", "right"), ("end", "right"), ("frames", "right"))):
        widest = max([len(column)] + [len(row[index]) for row in rows])
        table.add_column(column, justify=justify, no_wrap=True, min_width=min(widest, 16 if index in (0, 2) else 99))
    table.add_column("text", overflow="fold", ratio=1, min_width=12)
    for row in rows:
        table.add_row(*row)
    out.print(table)
    loud = doc["loudness"]
    level = f"{loud['integrated_lufs']:.1f} LUFS" if loud["integrated_lufs"] is not None else "too short to measure"
    if not result.up_to_date:
        out.print(f"speech: {result.synthesized} synthesized, {result.cached} from cache, {result.recorded} recorded "
                  f"in {result.speech_seconds:.3f} s", highlight=False)
    out.print(f"mix: {level}, true peak {loud['true_peak_dbtp']} dBTP, gain {loud['gain_db']:+.2f} dB, "
              f"limiter {loud['limited_db']:.2f} dB", highlight=False)
    out.print(f"{'up to date' if result.up_to_date else 'wrote'} {result.out_dir}/: tracks/ ({len(names)}), "
              f"mix.wav, cues.json", highlight=False)


def _settings(pairs: list[str]) -> dict[str, str]:
    from talkstudio.errors import InputError, Problem

    settings = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name.strip():
            raise InputError(Problem(f"--opt {pair!r} is not NAME=VALUE", hint="e.g. --opt steps=20"))
        settings[name.strip()] = value.strip()
    return settings


@app.command()
def render(
    script: ScriptArg,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="the mp4 to write (default: renders/<script>.mp4)")] = None,
    backend: Annotated[Optional[str], typer.Option("--backend", "-b", help="generator, overriding video.backend (puppet, anytalker, multitalk, infinitetalk, bindyouravatar)")] = None,
    frame_num: Annotated[Optional[int], typer.Option("--frame-num", help="frames per chunk, 4n+1 (default: the backend's, 81)")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="seed, overriding video.seed")] = None,
    burn_subtitles: Annotated[bool, typer.Option("--burn-subtitles", help="draw the subtitles into the picture (libass)")] = False,
    captions: CaptionsOpt = None,
    models: Annotated[Optional[Path], typer.Option("--models", help="model folders of a GPU backend (default: $TALKSTUDIO_MODELS)")] = None,
    opt: Annotated[Optional[list[str]], typer.Option("--opt", help="backend setting NAME=VALUE, over video.options (repeatable; `doctor` lists them)")] = None,
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Render a screenplay to an mp4: H.264 + AAC + a soft subtitle track.

    Beside the video: .srt, .vtt and .ass subtitles, and a folder with the
    tracks, the mix and cues.json. Every chunk is cached by its inputs, so a
    killed render resumes where it stopped and an edit re-renders only the
    chunks it changes.
    """
    from talkstudio.cache import Cache
    from talkstudio.progress import Reporter
    from talkstudio.render import RenderOptions, default_target, render_video

    started = time.perf_counter()
    target = output or default_target(script)
    result = render_video(script, target, Cache(cache, enabled=not no_cache), Reporter(quiet=quiet),
                          RenderOptions(backend, frame_num, seed, burn_subtitles, models, _settings(opt or []),
                                        captions.value if captions else None))
    if quiet:
        return
    if not result.up_to_date:
        _print_timeline(result.audio)
        took = time.perf_counter() - started
        duration = result.audio.cues["duration"]
        out.print(f"chunks: {result.chunks} ({result.chunks_cached} from cache); {duration:.1f} s of video in "
                  f"{took:.1f} s ({duration / took:.1f}x real time)", highlight=False)
    subs = ", ".join(p.name for p in result.subtitles.values())
    out.print(f"{'up to date' if result.up_to_date else 'wrote'} {result.target} (+ {subs}, {result.work_dir}/)",
              highlight=False)


@app.command()
def batch(
    template: Annotated[Path, typer.Argument(help="screenplay template (Jinja2 over YAML), e.g. templates/interview/episode.yaml.j2", show_default=False)],
    data: Annotated[Path, typer.Option("--data", "-d", help="rows, one episode each: .csv (header line), .jsonl or .yaml (a list)", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", "--out", "-o", help="output folder (default: renders/<data file name>)")] = None,
    check: Annotated[bool, typer.Option("--check", help="write and check every row's screenplay, render nothing")] = False,
    workers: Annotated[int, typer.Option("--workers", "-w", min=1, help="units rendered at once on this machine")] = 1,
    gpus: Annotated[Optional[str], typer.Option("--gpus", help="GPU ids, e.g. 0,1: one local worker per GPU, each seeing only its own (replaces --workers)")] = None,
    ray: Annotated[Optional[str], typer.Option("--ray", help="run on a Ray cluster: its ADDRESS, auto, or local (pip install 'talkstudio\\[ray]')")] = None,
    backend: Annotated[Optional[str], typer.Option("--backend", "-b", help="generator, overriding video.backend")] = None,
    models: Annotated[Optional[Path], typer.Option("--models", help="model folders of a GPU backend (default: $TALKSTUDIO_MODELS)")] = None,
    cache: Annotated[Optional[Path], typer.Option("--cache", help="cache shared by all workers; with Ray, a folder every node sees at this path (default: $TALKSTUDIO_CACHE or ~/.cache/talkstudio)")] = None,
    any_path: Annotated[bool, typer.Option("--any-path", help="let row values name files outside the template's and the data's folders (trusted data only)")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Render one episode per data row from a screenplay template.

    Each row's screenplay is written to OUT/<episode>/screenplay.yaml (the name
    from an `episode` or `id` column, else the row number) and checked; bad rows
    are reported with their row, column and message, and the others go on.
    Episodes whose video matches its inputs are skipped, so a re-run after a
    failure, a kill or an edit renders only what is missing. OUT/batch-
    report.json lists every episode's status, duration and output. Exit code 0
    when all are done, 2 when rows are invalid, 1 when episodes failed, 130 when
    interrupted.
    """
    from talkstudio.batch import BatchSettings, check_batch, run_batch
    from talkstudio.progress import Reporter
    from talkstudio.render import RenderOptions

    out_dir = output or Path("renders") / data.stem
    if check:
        episodes = check_batch(template, data, out_dir, any_path)
        if not quiet:
            out.print(f"[green]ok[/green] {len(episodes)} rows: every screenplay is valid (in {escape(str(out_dir))}/)",
                      highlight=False)
        return
    settings = BatchSettings(workers, [g.strip() for g in gpus.split(",") if g.strip()] if gpus else [], ray, cache,
                             RenderOptions(backend=backend, models=models), any_path)
    result = run_batch(template, data, out_dir, settings, Reporter(quiet=quiet))
    if not quiet or result.exit_code:
        _print_batch(result)
    raise typer.Exit(result.exit_code)


def _print_batch(result) -> None:
    colours = {"rendered": "green", "up to date": "green", "failed": "red", "invalid": "red", "interrupted": "yellow"}
    table = Table(box=box.SIMPLE_HEAD, title=f"batch, {escape(result.runner)}: {result.seconds:.1f} s")
    for column in ("row", "episode", "status", "video s", "took s", "chunks", "output or error"):
        table.add_column(column, justify="right" if column in ("row", "video s", "took s") else "left",
                         overflow="fold")
    for o in result.outcomes:
        chunks = f"{o.chunks_rendered}/{o.chunks}" if o.chunks is not None else ""
        status = f"[{colours.get(o.status, 'white')}]{o.status}[/]"
        detail = o.output if o.error is None else o.error.splitlines()[0]
        table.add_row(str(o.row), escape(o.episode), status, f"{o.duration:.1f}" if o.duration else "",
                      f"{o.seconds:.1f}" if o.seconds else "", chunks, escape(detail or ""))
    out.print(table)
    counts = ", ".join(f"{result.count(s)} {s}" for s in colours if result.count(s))
    out.print(f"{counts}; report: {result.report}", highlight=False)


@app.command(name="edit")
def edit_(
    video: Annotated[Path, typer.Argument(help="an mp4 made by `talkstudio render` (its folder beside it has cues.json, stages.json)", show_default=False)],
    edl: Annotated[Optional[Path], typer.Option("--edl", help="apply this edit decision list (edited by you) instead of deciding the shots")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="the cut to write (default: VIDEO's name + .cut.mp4)")] = None,
    min_shot: Annotated[float, typer.Option("--min-shot", min=0.1, help="no shot shorter than this, seconds")] = 1.5,
    reactions: Annotated[float, typer.Option("--reactions", min=0.0, max=1.0, help="chance that a silence long enough for a shot shows a listener")] = 0.5,
    seed: Annotated[int, typer.Option("--seed", help="seed of the reaction shots' choice")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing, different edit decision list")] = False,
    aspect: Annotated[Optional[str], typer.Option("--aspect", help="reframe to 9:16, 4:5 or 1:1 (social video) around whoever speaks, with the captions burned in its safe area")] = None,
    captions: CaptionsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Multicam edit of a render: cut between the wide shot and close-ups of whoever speaks.

    Close-ups are cropped from the wide render around each face. The automatic
    edit shows the speaker (close-up or wide), goes wide when people talk at
    once, in rapid exchanges and at each scene's start, cuts to a listener now
    and then in a silence, and holds every shot at least --min-shot seconds. Its
    decisions are written beside VIDEO as .edl.txt, one shot a line (START END
    wide | close NAME); edit them and re-apply with --edl FILE.
    """
    from talkstudio.multicam import EditSettings, edit_video

    settings = EditSettings(min_shot=min_shot, reactions=reactions, seed=seed, aspect=_aspect(aspect),
                            captions=captions.value if captions else None)
    result = edit_video(video, output, edl, settings, overwrite)
    if not quiet:
        close = sum(1 for shot in result.shots if shot.close)
        source = "wrote the decisions to" if result.decided else "applied"
        timelines = f" and {', '.join(p.name for p in result.timelines)}" if result.timelines else ""
        out.print(f"{len(result.shots)} shots ({close} close-ups); {source} {result.edl}; wrote {result.target}"
                  f"{timelines}", highlight=False)


def _aspect(text: Optional[str]) -> Optional[tuple[int, int]]:
    from talkstudio.errors import InputError, Problem

    if text is None:
        return None
    shapes = {"9:16": (9, 16), "4:5": (4, 5), "1:1": (1, 1)}
    if text not in shapes:
        raise InputError(Problem(f"--aspect {text} is not one of {', '.join(shapes)}", field="--aspect",
                                 hint="9:16 for stories and shorts, 4:5 or 1:1 for feeds"))
    return shapes[text]


@app.command(name="import")
def import_(
    script: Annotated[Path, typer.Argument(help="a Fountain screenplay (.fountain)", show_default=False)],
    cast: Annotated[Path, typer.Option("--cast", "-c", help="YAML with cast: (and optionally voice:, video:, timing:, lexicon:)", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="the screenplay YAML to write (default: SCRIPT with .yaml)")] = None,
) -> None:
    """Import a Fountain screenplay as a talkstudio screenplay YAML.

    Scene headings become scenes (the first action paragraph their prompt),
    character cues the speakers (extensions such as (V.O.) ignored; matched to
    cast ids and names in any case), parentheticals delivery words (whispering,
    quietly, shouting...), a pause for (beat), or else the line's emotion; dual
    dialogue (^) overlaps the line before. Characters missing from the cast are
    all reported with their line numbers.
    """
    from talkstudio.fountain import import_fountain

    result = import_fountain(script, cast, output or script.with_suffix(".yaml"))
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True)
    out.print(f"wrote {result.output}: {result.scenes} scenes, {result.lines} lines", highlight=False)


@app.command()
def podcast(
    cast_file: Annotated[Path, typer.Option("--cast", help="cast YAML: cast (names, portraits), optional title, video, audio, stage, detection", show_default=False)],
    track: Annotated[Optional[list[str]], typer.Option("--track", "-t", help="NAME=FILE: a cast member's recording, any format ffmpeg reads (repeatable; left to right on stage); default: the cast file's tracks:", show_default=False)] = None,
    transcript: Annotated[Optional[Path], typer.Option("--transcript", help="SRT, VTT, ASS or plain 'Name: text' lines (default: the cast file's transcript:); without one, no subtitles")] = None,
    soundtrack: Annotated[Optional[str], typer.Option("--soundtrack", help="what the video is heard with: recorded (the recordings summed, as they are), gated (only each host's detected speech), or an audio file (your mastered mix, used as it is); default: the cast file's soundtrack:, else recorded", show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="the mp4 to write (default: renders/<cast file>.mp4)")] = None,
    backend: Annotated[Optional[str], typer.Option("--backend", "-b", help="generator, overriding video.backend")] = None,
    frame_num: Annotated[Optional[int], typer.Option("--frame-num", help="frames per chunk, 4n+1")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="seed, overriding video.seed")] = None,
    burn_subtitles: Annotated[bool, typer.Option("--burn-subtitles", help="draw the subtitles into the picture (libass)")] = False,
    captions: CaptionsOpt = None,
    models: Annotated[Optional[Path], typer.Option("--models", help="model folders of a GPU backend (default: $TALKSTUDIO_MODELS)")] = None,
    opt: Annotated[Optional[list[str]], typer.Option("--opt", help="backend setting NAME=VALUE (repeatable)")] = None,
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Turn a recorded episode (one recording per host) into a video of the hosts talking.

    Speech is found on every track by voice activity detection (Silero VAD);
    what one microphone only hears from another host (bleed) goes to that host,
    short pauses are merged, and each track is gated to its speech as that
    host's concat-pad track, which drives the picture. The video is heard with
    the recordings as they are (or --soundtrack). With --transcript, subtitles
    come from it, aligned to the detected speech; without one there are no
    subtitles. Needs pip install 'talkstudio\\[podcast]'.
    """
    from talkstudio.cache import Cache
    from talkstudio.podcast import parse_tracks, render_podcast
    from talkstudio.progress import Reporter
    from talkstudio.render import RenderOptions

    started = time.perf_counter()
    target = output or Path("renders") / f"{cast_file.stem}.mp4"
    result = render_podcast(cast_file, parse_tracks(track or []), transcript, target, Cache(cache, enabled=not no_cache),
                            Reporter(quiet=quiet), RenderOptions(backend, frame_num, seed, burn_subtitles, models,
                                                                 _settings(opt or []),
                                                                 captions.value if captions else None), soundtrack)
    if quiet:
        return
    names = {s["id"]: s["name"] for s in result.cues["speakers"]}
    for speaker, found in result.regions.items():
        out.print(f"{escape(names[speaker])}: {len(found)} regions, {sum(e - s for s, e in found):.1f} s of speech",
                  highlight=False)
    duration, took = result.cues["duration"], time.perf_counter() - started
    if not result.up_to_date:
        out.print(f"chunks: {result.chunks} ({result.chunks_cached} from cache); {duration:.1f} s of video in "
                  f"{took:.1f} s", highlight=False)
    if not result.subtitles:
        out.print("no transcript given: no subtitles (add --transcript FILE: SRT, VTT, ASS or 'Name: text' lines)",
                  highlight=False)
    sidecars = f" + {', '.join(p.name for p in result.subtitles.values())}" if result.subtitles else ""
    out.print(f"{'up to date' if result.up_to_date else 'wrote'} {result.target} ({result.work_dir}/{sidecars})",
              highlight=False)


@app.command()
def plan(
    script: ScriptArg,
    backend: Annotated[Optional[str], typer.Option("--backend", "-b", help="plan for this generator")] = None,
    frame_num: Annotated[Optional[int], typer.Option("--frame-num", help="frames per chunk, 4n+1")] = None,
    cache: CacheOpt = None,
) -> None:
    """Print the timeline and the chunk plan, without rendering any picture.

    Speech is synthesised (and cached) because line lengths decide the timeline.
    """
    from talkstudio.cache import Cache
    from talkstudio.plan_report import plan_report

    scenes, totals = plan_report(script, Cache(cache), backend, frame_num)
    table = Table(box=box.SIMPLE_HEAD, title=escape(totals["title"]))
    for column in ("scene", "frames", "seconds", "on stage", "chunks", "windows (first frame+length)"):
        table.add_column(column, no_wrap=column != "windows (first frame+length)")
    for row in scenes:
        table.add_row(row["scene"], f"{row['start_frame']}-{row['end_frame']}", f"{row['seconds']:.2f}",
                      ", ".join(row["on_stage"]), str(len(row["windows"])),
                      " ".join(f"{start}+{length}" for start, length in row["windows"]))
    out.print(table)
    out.print(f"backend {totals['backend']} at {totals['fps']:g} fps, {totals['frame_num']} frames per chunk, "
              f"{totals['motion_frames']} carried; {totals['frames']} frames in {totals['chunks']} chunks", highlight=False)


@app.command()
def say(
    text: Annotated[str, typer.Argument(help="what to say")],
    voice: Annotated[Optional[str], typer.Option("--voice", "-v", help="voice id of the engine (espeak: ava, en-gb+m3...)")] = None,
    engine: Annotated[Optional[str], typer.Option("--engine", "-e", help="voice engine (default: espeak, or the character's)")] = None,
    model: Annotated[Optional[Path], typer.Option("--model", help="model file or folder of a neural engine")] = None,
    reference: Annotated[Optional[Path], typer.Option("--reference", help="reference recording of a cloning engine")] = None,
    language: Annotated[Optional[str], typer.Option("--language", help="language code, e.g. en-us")] = None,
    rate: Annotated[Optional[float], typer.Option("--rate", help="speaking rate, 1.0 = normal")] = None,
    pitch: Annotated[Optional[float], typer.Option("--pitch", help="pitch shift in semitones")] = None,
    setting: Annotated[Optional[list[str]], typer.Option("--setting", help="engine setting NAME=VALUE (repeatable)")] = None,
    delivery: Annotated[Optional[str], typer.Option("--delivery", help="delivery words, e.g. 'whispering, slowly'")] = None,
    script: Annotated[Optional[Path], typer.Option("--script", help="a screenplay: its lexicon, and --character's voice")] = None,
    character: Annotated[Optional[str], typer.Option("--character", "-c", help="say it as this cast member of --script")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="WAV file to write")] = Path("say.wav"),
    play_: Annotated[bool, typer.Option("--play", help="play the sample when written")] = False,
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """Audition a voice: speak TEXT into a WAV file (and play it), as a screenplay line would sound."""
    from talkstudio.audition import cast_voice, delivery_hints, play, say as speak
    from talkstudio.cache import Cache
    from talkstudio.outputs import refuse_inputs_as_outputs, require_suffix

    require_suffix(output, (".wav",))
    refuse_inputs_as_outputs([output], [script, model, reference])
    given = {"id": voice, "engine": engine, "model": model, "reference": reference, "language": language,
             "rate": rate, "pitch": pitch, "settings": _engine_settings(setting or []) or None}
    chosen, lexicon = cast_voice(script, character, {k: v for k, v in given.items() if v is not None})
    sample = speak(text, chosen, lexicon, delivery_hints(delivery), output, Cache(cache, enabled=not no_cache))
    source = "from the cache" if sample.from_cache else f"in {sample.took:.2f} s ({sample.seconds / max(sample.took, 1e-6):.0f}x real time)"
    out.print(f"wrote {output}: {sample.seconds:.2f} s, {chosen.engine} voice {chosen.id or 'default'}, {source}",
              highlight=False)
    if play_ and play(output) is None:
        out.print("no audio player found (ffplay, paplay, aplay, afplay, play); open the file yourself", highlight=False)


def _engine_settings(pairs: list[str]) -> dict:
    """NAME=VALUE pairs with numbers and true/false read as such (engines check names and types)."""
    import yaml

    settings = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name.strip():
            raise InputError(f"--setting {pair!r} is not NAME=VALUE, e.g. --setting noise_scale=0.5")
        settings[name.strip()] = yaml.safe_load(value) if value.strip() else ""
    return settings


@app.command()
def review(
    script: ScriptArg,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="the render it shows and makes (default: renders/<script>.mp4)")] = None,
    port: Annotated[int, typer.Option("--port", help="port on 127.0.0.1 (default: a free one)")] = 0,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="only print the address")] = False,
    podcast: Annotated[bool, typer.Option("--podcast", help="SCRIPT is a podcast's cast file: review its episode as recorded (read only; -o its mp4)")] = False,
    cache: CacheOpt = None,
) -> None:
    """A local page to see, hear and fix a production line by line: lanes per character, the render
    with its subtitles, lines edited in place (written back into the YAML with its comments kept,
    checked as `validate` checks) and re-rendered (only what an edit reaches). SCRIPT may also be a
    batch output folder (every episode reviewable). Listens on 127.0.0.1 with a random token in the
    address. Needs pip install 'talkstudio\\[review]'."""
    from talkstudio.cache import Cache
    from talkstudio.render import default_target
    from talkstudio.review import serve

    target = output or (Path("renders") / f"{script.stem}.mp4" if podcast else default_target(script))
    serve(script, target, Cache(cache), port, not no_browser,
          announce=lambda text: out.print(escape(text), highlight=False), podcast=podcast)


@app.command()
def voices(
    engine: Annotated[Optional[str], typer.Option("--engine", "-e", help="list only this engine")] = None,
    model: Annotated[Optional[Path], typer.Option("--model", help="the voices and speakers in this model (with --engine)")] = None,
    all_: Annotated[bool, typer.Option("--all", help="list every language and variant, not only presets")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List the installed voice engines and the voices each offers."""
    from talkstudio.voices import engine_names, get_engine

    names = engine_names()
    if engine and engine not in names:
        raise InputError(f"unknown voice engine '{engine}'; installed: {', '.join(names)}")
    listing = {}
    if model is not None and not engine:
        raise InputError("--model needs --engine, the engine that reads it")
    if model is not None and not model.exists():
        raise InputError(f"--model {model}: no such file or folder")
    for name in [engine] if engine else names:
        try:
            e = get_engine(name)
        except ImportError as error:
            listing[name] = {"version": f"not loadable: {error}", "voices": []}
            continue
        try:
            version = e.version()
        except ImportError as error:  # its package is missing; a model's speakers can still be read
            version = f"not loadable: {error}"
        try:
            found = e.voices(model) if model else ([] if version.startswith("not loadable") else e.voices())
        except ValueError as error:  # the model is not one this engine reads
            raise InputError(f"{name}: {error}") from None
        listing[name] = {"version": version, "voices": found}
    if as_json:
        out.print_json(json.dumps({n: {"version": v["version"], "voices": [vars(x) for x in v["voices"]]}
                                   for n, v in listing.items()}))
        return
    for name, entry in listing.items():
        shown = [v for v in entry["voices"] if all_ or v.kind in ("preset", "speaker", "voice")]
        table = Table(title=escape(f"{name} ({entry['version']})"))
        for column in ("id", "kind", "language", "description"):
            table.add_column(column)
        for v in shown:
            table.add_row(*(escape(str(x)) for x in (v.id, v.kind, v.language, v.description)))
        out.print(table)
        hidden = len(entry["voices"]) - len(shown)
        if hidden:
            out.print(f"  ...and {hidden} languages and variants: --all lists them "
                      f"(espeak ids combine them, e.g. en-gb+m3)", highlight=False)


@app.command()
def doctor(
    models: Annotated[Optional[Path], typer.Option("--models", help="AnyTalker model folder (default: $TALKSTUDIO_MODELS)")] = None,
    ray: Annotated[Optional[str], typer.Option("--ray", metavar="ADDRESS", help="also say what the Ray cluster at HOST:PORT (or auto) exposes: who can reach its nodes, whether it asks for a token")] = None,
) -> None:
    """Say which backends, voices and extras (podcast detection, Ray) this machine can use, and why not."""
    from talkstudio.doctor import checks, ray_exposure

    table = Table(box=box.SIMPLE_HEAD)
    for column in ("check", "", "detail"):
        table.add_column(column, overflow="fold")
    for check in checks(models) + (ray_exposure(ray) if ray else []):
        table.add_row(check.name, "[green]ok[/green]" if check.ok else "[red]no[/red]", escape(check.detail))
    out.print(table)
    _print_backend_options()


def _print_backend_options() -> None:
    from talkstudio.generators import GENERATORS

    for info in GENERATORS.values():
        if not info.options:
            continue
        table = Table(title=f"{info.name} options (video.options or render --opt NAME=VALUE)", box=box.SIMPLE_HEAD)
        for column in ("option", "default", "allowed", "meaning"):
            table.add_column(column, overflow="fold")
        for option in info.options:
            table.add_row(option.name, "auto" if option.default is None else str(option.default), option.allowed,
                          option.help)
        out.print(table)


@app.command()
def schema(
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="write to a file instead of stdout")] = None,
) -> None:
    """Print the JSON Schema of the screenplay format (for editor autocompletion and checks)."""
    from talkstudio.generators import GENERATORS
    from talkstudio.screenplay import json_schema

    text = json.dumps(json_schema(list(GENERATORS)), indent=2)
    if output:
        output.write_text(text + "\n")
    else:
        print(text)


def _log_internal_error() -> Path:
    """The traceback in a log file: under the cache, or the temporary folder when the cache is unwritable."""
    import tempfile

    from talkstudio.cache import default_cache_root

    text = f"talkstudio {__version__}\nargv: {sys.argv}\n\n{traceback.format_exc()}"
    name = f"talkstudio-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    for folder in (default_cache_root() / "logs", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
            return folder / name
        except OSError:
            continue
    return Path(tempfile.gettempdir()) / name


INTERRUPTED = 130


def _say_interrupted() -> None:
    err.print("interrupted: what was finished is kept in the cache; run the same command to go on", highlight=False)


def main(argv: list[str] | None = None) -> int:
    """Run the app; bad input exits 2 with the problems, internal failures exit 1 with a log."""
    from talkstudio.interrupts import catch_dropped

    catch_dropped()
    try:
        app(args=argv, prog_name="talkstudio")  # usage errors: Typer prints them and exits 2
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if code == INTERRUPTED:  # Ctrl-C, which Typer turns into this exit code
            _say_interrupted()
        return code
    except InputError as error:
        for problem in error.problems:
            err.print(f"[red]error:[/red] {escape(problem.render())}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        _say_interrupted()
        return INTERRUPTED
    except Exception as error:  # noqa: BLE001 - the one place that turns crashes into a log
        from talkstudio.errors import environment_problem

        problem = environment_problem(error)
        if problem is not None:  # the machine's fault, not the program's: no log, exit 1
            err.print(f"[red]error:[/red] {escape(problem)}", highlight=False, soft_wrap=True)
            return 1
        log = _log_internal_error()
        err.print(f"[red]internal error:[/red] {escape(f'{type(error).__name__}: {error}')}\n"
                  f"the details are in {log}", highlight=False)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
