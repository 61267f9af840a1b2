"""The orchestrator: wires the stages together and reports progress. No stage logic lives here.

    screenplay.yaml -> Screenplay -> stages (faces bound) -> clips (speech) -> Timeline
      -> chunk plan -> frames per chunk (generator) -> stitched -> partial movie files
      -> subtitles -> mp4 (partials joined + mix + subtitle track)
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from talkstudio import manifest
from talkstudio.cache import Cache
from talkstudio.errors import InputError, Problem
from talkstudio.progress import Reporter
from talkstudio.subtitles import Layout, rules_for, track_language, write_subtitles
from talkstudio.subtitles.fonts import font_folders


@dataclass
class AudioResult:
    out_dir: Path
    cues: dict  # the cues.json document
    up_to_date: bool = False  # nothing was done: the outputs already matched their inputs
    synthesized: int = 0
    cached: int = 0
    recorded: int = 0
    speech_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


@dataclass
class RenderOptions:
    backend: str | None = None  # overrides video.backend
    frame_num: int | None = None  # overrides the backend's chunk length
    seed: int | None = None  # overrides video.seed
    burn_subtitles: bool = False
    models: Path | None = None  # model folders of GPU backends
    backend_options: dict = field(default_factory=dict)  # NAME -> text, over video.options
    captions: str | None = None  # overrides subtitles.captions: plain, karaoke or pop


@dataclass
class VideoResult:
    target: Path
    work_dir: Path
    subtitles: dict[str, Path]
    audio: AudioResult
    chunks: int = 0
    chunks_cached: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # per stage
    up_to_date: bool = False


def screenplay_inputs(screenplay) -> list[Path]:
    """Every file a render reads that belongs to the user: never an output."""
    return [screenplay.file, *screenplay.input_files()]


def render_audio(script: Path, out_dir: Path, cache: Cache, reporter: Reporter) -> AudioResult:
    from talkstudio.outputs import check_output_folder, claim_folder, output_lock

    out_dir = Path(out_dir)
    check_output_folder(out_dir)
    # 0. nothing to do when the outputs were made from exactly these inputs
    if cache.enabled and manifest.up_to_date(out_dir, "audio", script):
        cues = _read_cues(out_dir)
        if cues is not None:
            reporter.info(f"{out_dir}: up to date (inputs unchanged); --no-cache redoes it")
            return AudioResult(out_dir, cues, up_to_date=True)

    from talkstudio.checks import load_screenplay

    # 1. parse and check everything before any work starts; the folder must be ours to write
    screenplay = load_screenplay(script)
    claim_folder(out_dir, "audio", screenplay_inputs(screenplay))
    # 2.-4. speech, timeline, files
    with output_lock(out_dir, out_dir):
        result, _ = _speak_and_lay_out(screenplay, out_dir, cache, reporter)
    return result


def _read_cues(folder: Path) -> dict | None:
    """The cues.json of an output folder, or None when it is missing or unreadable (then it is made again)."""
    try:
        return json.loads((folder / "cues.json").read_text())
    except (OSError, ValueError):
        return None


def _speak_and_lay_out(screenplay, out_dir: Path, cache: Cache, reporter: Reporter):
    from talkstudio.speech import speak_all, timeline_rate
    from talkstudio.timeline import build_timeline, cues_document, write_timeline

    # 2. speak every line (cached by content)
    rate = timeline_rate(screenplay)
    started = time.perf_counter()
    clips, stats = speak_all(screenplay, cache, rate, reporter)
    speech_seconds = time.perf_counter() - started

    # 3. lay out the concat-pad timeline and normalise loudness
    timeline = build_timeline(screenplay, clips, rate)
    for warning in timeline.warnings:
        reporter.warn(warning)

    # 4. write tracks, mix and cues, then the manifest that makes a re-run free
    files = write_timeline(timeline, screenplay, out_dir)
    engines = [c.voice.engine for c in screenplay.cast.values()]
    manifest.record(out_dir, "audio", screenplay.file, screenplay.input_files(), engines, list(files.values()))
    result = AudioResult(out_dir, cues_document(timeline, screenplay), False, stats.synthesized, stats.cached,
                         stats.recorded, speech_seconds, timeline.warnings)
    return result, timeline


def default_target(script: Path) -> Path:
    return Path("renders") / f"{Path(script).stem}.mp4"


def render_video(script: Path, target: Path, cache: Cache, reporter: Reporter,
                 options: RenderOptions | None = None) -> VideoResult:
    options = options or RenderOptions()
    target = Path(target)
    from talkstudio.outputs import SUBTITLE_KINDS, check_output_folder, claim_video_outputs, require_suffix

    work_dir = target.with_suffix("")
    check_output_folder(work_dir)
    settings = render_settings(options)
    subtitle_paths = {kind: target.with_suffix(f".{kind}") for kind in SUBTITLE_KINDS}
    require_suffix(target, (".mp4",))
    # 0. nothing to do when the video was made from exactly these inputs and settings
    if video_up_to_date(script, target, cache, options):
        cues = _read_cues(work_dir)
        if cues is not None:
            reporter.info(f"{target}: up to date (inputs unchanged); --no-cache redoes it")
            return VideoResult(target, work_dir, subtitle_paths, AudioResult(work_dir, cues, up_to_date=True),
                               up_to_date=True)

    from talkstudio.checks import load_screenplay

    # 1. parse and check everything before any work starts: no output may be an input, and the
    # work folder must be ours; one run at a time writes this output
    screenplay = load_screenplay(script)
    with claim_video_outputs(target, screenplay_inputs(screenplay), "render"):
        return _render_video(screenplay, target, work_dir, subtitle_paths, cache, reporter, options, settings)


def _render_video(screenplay, target: Path, work_dir: Path, subtitle_paths: dict, cache: Cache, reporter: Reporter,
                  options: RenderOptions, settings: dict) -> VideoResult:
    from talkstudio.generators import GENERATORS, get_generator
    from talkstudio.stage import build_stage

    timings: dict[str, float] = {}
    clock = time.perf_counter()
    generator = load_generator(screenplay, options, GENERATORS, get_generator)
    seed = options.seed if options.seed is not None else screenplay.video.seed
    # before any work: a font that has every character of the text
    font = subtitle_font(screenplay, screenplay_text(screenplay)) if options.burn_subtitles else None

    # 2.-3. each scene's stage (the picture, whose face is where) beside speech and the timeline
    # (tracks, mix, cues in the work folder): face finding and speech synthesis both run in native
    # code that releases the interpreter, so the two overlap on a small machine
    from concurrent.futures import ThreadPoolExecutor

    from talkstudio.loudness import preload_meter

    preload_meter()
    with ThreadPoolExecutor(1, thread_name_prefix="stages") as pool:
        building = pool.submit(lambda: [build_stage(screenplay, scene, cache) for scene in screenplay.scenes])
        audio, timeline = _speak_and_lay_out(screenplay, work_dir, cache, reporter)
        timings["audio"] = time.perf_counter() - clock
        stages = building.result()
    with reporter.task("stages", len(stages)) as advance:
        for stage in stages:
            for warning in stage.warnings:
                reporter.warn(warning)
            advance()
    write_stages(work_dir / "stages.json", screenplay, stages)
    timings["stages and audio"] = time.perf_counter() - clock

    # 4. plan chunks, render the missing ones (partial movie files in the cache), while the mix
    # is encoded to AAC beside them
    clock = time.perf_counter()
    from talkstudio.assemble import AudioEncoding, Burn, assemble
    from talkstudio.chunks import render_chunks

    encoding = AudioEncoding(work_dir / "mix.wav", work_dir / "mix.m4a")
    try:
        partials, rendered = render_chunks(screenplay, timeline, stages, generator, cache, reporter,
                                           frame_num=options.frame_num, seed=seed)
        mix = encoding.wait()
    finally:
        encoding.abort()
    timings["chunks"] = time.perf_counter() - clock

    # 5. subtitles beside the video, then the mp4: partials joined, mix, subtitle track
    clock = time.perf_counter()
    layout = subtitle_layout(screenplay, audio.cues, font, options, stages)
    subtitles = write_subtitles(audio.cues, layout, target)
    with reporter.task("assemble", 1) as advance:
        assemble(partials, mix, subtitles["srt"], target, track_language(layout.rules.language),
                 burn=Burn(subtitles["ass"], font_folders(font)) if font else None, work_dir=work_dir)
        advance()
    timings["assemble"] = time.perf_counter() - clock

    engines = [c.voice.engine for c in screenplay.cast.values()]
    manifest.record(work_dir, "video", screenplay.file, screenplay.input_files(), engines,
                    [target, *subtitles.values()], settings)
    return VideoResult(target, work_dir, subtitles, audio, len(partials), len(partials) - rendered, timings)


def subtitle_font(screenplay, text: str):
    """The font to burn the subtitles (`text`, and the names) with; InputError when no font has them."""
    from talkstudio.subtitles.fonts import burn_font

    names = " ".join(c.name or "" for c in screenplay.cast.values())
    return burn_font(f"{names} {text}", screenplay.subtitles.font)


def screenplay_text(screenplay) -> str:
    return " ".join(line.text or "" for scene in screenplay.scenes for line in scene.lines)


def subtitle_layout(screenplay, cues: dict, font, options: RenderOptions, stages=()) -> Layout:
    """The subtitles' rules (the screenplay's, `--captions` over them), speakers, size, font and faces."""
    from dataclasses import replace

    rules = rules_for(screenplay, cues["fps"])
    if options.captions:
        rules = replace(rules, captions=options.captions)
    faces = {stage_scene: {name: face.box[0] + face.box[2] / 2 for name, face in stage.faces.items()}
             for stage_scene, stage in zip([scene.id for scene in screenplay.scenes], stages)}
    return Layout([(s["id"], s["name"]) for s in cues["speakers"]], screenplay.video.size, rules,
                  font.family if font else "DejaVu Sans", faces)


def render_settings(options: RenderOptions) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()}


def video_up_to_date(script: Path, target: Path, cache: Cache, options: RenderOptions) -> bool:
    """The video at `target` was made from exactly these inputs and settings (reads only the manifest)."""
    target = Path(target)
    return (cache.enabled and target.exists()
            and manifest.up_to_date(target.with_suffix(""), "video", script, render_settings(options)))


def render_scene_chunks(script: Path, scene_ids: list[str], cache: Cache, reporter: Reporter,
                        options: RenderOptions | None = None) -> tuple[int, int]:
    """Render the chunks of some scenes into the cache only, and say how many there are and how many had
    to be rendered. Scenes are independent (no carry across a cut), so batch workers can render an
    episode's scenes at once; render_video then finds every chunk cached and only assembles."""
    options = options or RenderOptions()
    from talkstudio.checks import load_screenplay
    from talkstudio.chunks import render_chunks
    from talkstudio.generators import GENERATORS, get_generator
    from talkstudio.speech import speak_all, timeline_rate
    from talkstudio.stage import build_stage
    from talkstudio.timeline import build_timeline

    screenplay = load_screenplay(script)
    generator = load_generator(screenplay, options, GENERATORS, get_generator)
    seed = options.seed if options.seed is not None else screenplay.video.seed
    chosen = {index for index, scene in enumerate(screenplay.scenes) if scene.id in scene_ids}
    stages = [build_stage(screenplay, scene, cache) if index in chosen else None
              for index, scene in enumerate(screenplay.scenes)]
    rate = timeline_rate(screenplay)
    # every line is spoken: the mix's loudness, and so each scene's audio, depends on all of them
    timeline = build_timeline(screenplay, speak_all(screenplay, cache, rate, reporter)[0], rate)
    partials, rendered = render_chunks(screenplay, timeline, stages, generator, cache, reporter,
                                       frame_num=options.frame_num, seed=seed, scenes=chosen)
    return len(partials), rendered


def write_stages(path: Path, screenplay, stages) -> None:
    """Who is where in each scene's picture (face boxes, mouths, and the region each may move in: their
    panel, or the whole picture), for people and tools checking a render, and for the multicam edit."""
    from talkstudio.cache import atomic_write

    doc = {scene.id: {name: {**face.as_dict(), **({"region": list(stage.regions[name])} if name in stage.regions
                                                 else {})}
                      for name, face in stage.faces.items()}
           for scene, stage in zip(screenplay.scenes, stages)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w") as f:
        json.dump(doc, f, indent=1)


def _check_people(screenplay, info) -> None:
    """Every scene within what the backend can drive at once, before any model loads."""
    from talkstudio.stage import on_stage

    if info.max_people is None and not info.min_people:
        return
    most = info.max_people if info.max_people is not None else float("inf")
    people = [(scene.id, on_stage(scene, screenplay)) for scene in screenplay.scenes]
    wrong = [(scene, names) for scene, names in people if not info.min_people <= len(names) <= most]
    if wrong:
        needs = (f"exactly {info.min_people}" if info.min_people == info.max_people else
                 f"at most {info.max_people}" if not info.min_people else f"at least {info.min_people}")
        raise InputError([Problem(f"scene '{scene}' has {len(people)} {'person' if len(people) == 1 else 'people'} on "
                                  f"stage ({', '.join(people) or 'nobody'}); {info.name} drives {needs} at once",
                                  file=screenplay.file,
                                  hint="list who is on stage with the scene's cast:, or render with another backend")
                          for scene, people in wrong])


def load_generator(screenplay, options: RenderOptions, known: dict, get_generator):
    name = options.backend or screenplay.video.backend
    if name not in known:
        raise InputError(Problem(f"unknown backend '{name}'", hint=f"backends: {', '.join(known)}"))
    info = known[name]
    _check_people(screenplay, info)
    if options.frame_num is not None:
        from talkstudio.plan import check_frame_num

        check_frame_num(options.frame_num, info.motion_frames)
    try:
        settings = info.parse_options({**screenplay.video.options, **options.backend_options})
    except ValueError as error:
        raise InputError(Problem(str(error), hint="`talkstudio doctor` lists each backend's options")) from None
    if info.needs_gpu:
        settings["models"] = options.models
    try:
        generator = get_generator(name, **settings)
    except NotImplementedError as error:
        raise InputError(Problem(str(error))) from None
    if options.backend:
        screenplay.video.backend = name
    return generator
