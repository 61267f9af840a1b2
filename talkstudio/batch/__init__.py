"""Batch production: one screenplay template, many rows of data, one episode per row.

    template (Jinja2 over YAML) x rows (.csv, .jsonl, .yaml)
      -> OUT/<episode>/screenplay.yaml, each checked (bad rows reported together, never rendered)
      -> episodes whose video matches its inputs are skipped (the render manifest)
      -> units: an episode, or when workers outnumber episodes, each of its scenes and then the episode
      -> a local process pool or a Ray cluster, all sharing one chunk cache
      -> OUT/<episode>.mp4 (+ subtitles, OUT/<episode>/), OUT/batch-report.json after every episode

Nothing finished is lost: chunks and episodes are written whole (temp name, then rename), the
report is rewritten after each episode, and a re-run renders only what is missing.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from talkstudio.batch.rows import read_rows
from talkstudio.batch.runners import LocalPool, RayPool, Unit
from talkstudio.batch.template import Episode, prepare_episodes
from talkstudio.cache import Cache, atomic_write
from talkstudio.errors import InputError, Problem
from talkstudio.interrupts import stop_if_interrupted
from talkstudio.outputs import check_output_folder
from talkstudio.progress import Reporter
from talkstudio.render import RenderOptions, video_up_to_date

REPORT_NAME = "batch-report.json"
RENDERED, UP_TO_DATE, FAILED, INVALID, PENDING, INTERRUPTED = (
    "rendered", "up to date", "failed", "invalid", "pending", "interrupted")


@dataclass
class BatchSettings:
    workers: int = 1
    gpus: list[str] = field(default_factory=list)  # ids; one local worker per GPU
    ray: str | None = None  # a Ray address, "auto", or "local" (an instance started for this batch)
    cache: Path | None = None  # shared by every worker: on a cluster, a folder every node sees at this path
    options: RenderOptions = field(default_factory=RenderOptions)
    any_path: bool = False  # row values may name files anywhere (trusted data)


@dataclass
class Outcome:
    episode: str
    row: int
    status: str
    screenplay: str
    output: str | None = None  # the mp4, once rendered or up to date
    duration: float | None = None  # seconds of video
    seconds: float = 0.0  # time spent rendering it (all its units together)
    chunks: int | None = None
    chunks_rendered: int = 0  # the others came from the cache
    error: str | None = None
    workers: list[str] = field(default_factory=list)  # HOST:PID of the processes that rendered it


@dataclass
class BatchResult:
    outcomes: list[Outcome]
    report: Path
    runner: str
    seconds: float
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(outcome.status == status for outcome in self.outcomes)

    @property
    def exit_code(self) -> int:
        """130 interrupted, 2 some rows invalid (bad input), 1 some episodes failed, else 0."""
        if self.interrupted:
            return 130
        if self.count(INVALID):
            return 2
        return 1 if self.count(FAILED) else 0


def check_batch(template: Path, data: Path, out_dir: Path, any_path: bool = False) -> list[Episode]:
    """Every row's screenplay written and checked; InputError listing every problem of every bad row."""
    episodes = prepare_episodes(template, data, read_rows(data), Path(out_dir).resolve(), any_path)
    problems = [problem for episode in episodes for problem in episode.problems]
    if problems:
        raise InputError(problems)
    return episodes


def run_batch(template: Path, data: Path, out_dir: Path, settings: BatchSettings, reporter: Reporter) -> BatchResult:
    """Render every valid row's episode that is not up to date; bad rows and failures are reported, not raised."""
    started = time.perf_counter()
    out_dir = Path(out_dir).resolve()
    options = _absolute(settings.options)
    _check_settings(settings, out_dir)
    episodes = prepare_episodes(template, data, read_rows(data), out_dir, settings.any_path)
    cache = Cache(settings.cache)
    report = _Report(out_dir / REPORT_NAME, {"template": str(Path(template).resolve()),
                                             "data": str(Path(data).resolve()), "cache": str(cache.root.resolve())})
    for episode in episodes:
        report.outcomes[episode.row.number] = _first_outcome(episode, cache, options)
        for problem in episode.problems:
            reporter.warn(f"{episode.name} is not rendered: {problem.render()}")
    to_render = [e for e in episodes if report.outcomes[e.row.number].status == PENDING]
    runner, interrupted = "nothing to render", False
    try:
        if to_render:
            pool = _pool(settings, any(_needs_gpu(e, options) for e in to_render), reporter)
            runner = report.header["runner"] = pool.description
            report.write()
            reporter.info(f"{len(to_render)} of {len(episodes)} episodes to render on {runner}")
            try:
                _render(to_render, pool, cache.root.resolve(), options, report, reporter)
            finally:
                pool.close()
    except KeyboardInterrupt:  # the command exits 130 and says that finished work is kept
        interrupted = True
    finally:
        for outcome in report.outcomes.values():
            if outcome.status == PENDING:
                outcome.status = INTERRUPTED
        report.header["seconds"] = round(time.perf_counter() - started, 3)
        report.write()
    return BatchResult(list(report.outcomes.values()), report.path, runner, time.perf_counter() - started, interrupted)


def _pool(settings: BatchSettings, gpu: bool, reporter: Reporter):
    if settings.ray:
        return RayPool(settings.ray, settings.workers, gpu)
    if gpu and not settings.gpus and settings.workers > 1:
        reporter.warn("a GPU backend runs one unit per GPU: one worker; --gpus 0,1,... runs one on each")
        return LocalPool(1, [])
    return LocalPool(settings.workers, settings.gpus)


def _needs_gpu(episode: Episode, options: RenderOptions) -> bool:
    from talkstudio.generators import GENERATORS

    return GENERATORS[options.backend or episode.backend].needs_gpu


def _absolute(options: RenderOptions) -> RenderOptions:
    """Workers run elsewhere (other folders, other machines): every path they get is absolute."""
    return replace(options, models=options.models.resolve()) if options.models else options


def _check_settings(settings: BatchSettings, out_dir: Path) -> None:
    from talkstudio.generators import GENERATORS

    backend = settings.options.backend
    if backend and backend not in GENERATORS:
        raise InputError(Problem(f"unknown backend '{backend}'", field="--backend",
                                 hint=f"backends: {', '.join(GENERATORS)}"))
    if settings.ray and settings.gpus:
        raise InputError(Problem("--gpus is for local workers; Ray gives each unit a GPU itself", field="--gpus",
                                 hint="leave out --gpus with --ray"))
    check_output_folder(out_dir)


def _first_outcome(episode: Episode, cache: Cache, options: RenderOptions) -> Outcome:
    outcome = Outcome(episode.name, episode.row.number, PENDING, str(episode.script))
    if episode.problems:
        outcome.status = INVALID
        outcome.error = "\n".join(problem.render() for problem in episode.problems)
    elif video_up_to_date(episode.script, episode.target, cache, options):
        outcome.status, outcome.output = UP_TO_DATE, str(episode.target)
        cues = json.loads((episode.target.with_suffix("") / "cues.json").read_text())
        outcome.duration = cues["duration"]
    return outcome


@dataclass
class _EpisodeRun:
    """One episode's units in flight: its scenes (when split), then the whole episode."""

    episode: Episode
    outcome: Outcome
    whole: Unit
    in_flight: int = 0
    assembled: bool = False

    def first_units(self, split: bool) -> list[Unit]:
        scenes = self.episode.scenes if split else []
        return [replace(self.whole, scene=scene) for scene in scenes] if len(scenes) > 1 else [self.whole]

    def take(self, unit: Unit, result: dict) -> None:
        self.in_flight -= 1
        self.outcome.seconds += result["seconds"]
        if result.get("worker") and result["worker"] not in self.outcome.workers:  # none if the worker died
            self.outcome.workers.append(result["worker"])
        if not result["ok"]:
            self.outcome.error = self.outcome.error or result["error"]
            return
        self.outcome.chunks_rendered += result["rendered"]
        if unit.scene is None:
            self.assembled = True
            self.outcome.chunks, self.outcome.duration = result["chunks"], result["duration"]
            self.outcome.output = str(self.episode.target)
            self.outcome.status = UP_TO_DATE if result["up_to_date"] else RENDERED

    @property
    def ready_to_assemble(self) -> bool:
        return self.in_flight == 0 and not self.assembled and self.outcome.error is None

    @property
    def finished(self) -> bool:
        return self.in_flight == 0 and (self.assembled or self.outcome.error is not None)


def _render(episodes: list[Episode], pool, cache_root: Path, options: RenderOptions, report: _Report,
            reporter: Reporter) -> None:
    # an episode's scenes are worth separate units only when workers would otherwise wait
    split = len(episodes) < pool.slots
    jobs: dict = {}  # handle -> (run, unit)
    retried: set = set()  # units run again after a worker died under them

    def submit(run: _EpisodeRun, unit: Unit) -> None:
        jobs[pool.submit(unit)] = (run, unit)
        run.in_flight += 1

    with reporter.task("episodes", len(episodes)) as advance:
        try:
            for episode in episodes:
                whole = Unit(episode.name, episode.script, episode.target, cache_root, options,
                             gpu=_needs_gpu(episode, options))
                run = _EpisodeRun(episode, report.outcomes[episode.row.number], whole)
                for unit in run.first_units(split):
                    submit(run, unit)
            while jobs:
                stop_if_interrupted()
                for handle in pool.wait_any(list(jobs)):
                    run, unit = jobs.pop(handle)
                    result = pool.result(handle)
                    if result.get("lost") and (unit.episode, unit.scene) not in retried:
                        # a dead worker takes every unit of its pool down with it: each runs once more
                        # on the fresh pool, so only a unit that kills its worker again fails
                        retried.add((unit.episode, unit.scene))
                        run.in_flight -= 1
                        submit(run, unit)
                        continue
                    run.take(unit, result)
                    if run.ready_to_assemble:
                        submit(run, run.whole)
                    elif run.finished:
                        _finish(run, report, reporter)
                        advance()
        except KeyboardInterrupt:
            pool.stop(list(jobs))
            raise


def _finish(run: _EpisodeRun, report: _Report, reporter: Reporter) -> None:
    outcome = run.outcome
    if outcome.error is not None:
        outcome.status = FAILED
        reporter.warn(f"{outcome.episode}: failed: {outcome.error}")
    else:
        reporter.info(f"{outcome.episode}: {outcome.status}, {outcome.chunks_rendered} of {outcome.chunks} chunks "
                      f"rendered in {outcome.seconds:.1f} s")
    report.set(outcome)


class _Report:
    """OUT/batch-report.json, rewritten whole after every change, so a killed batch leaves a true one."""

    def __init__(self, path: Path, header: dict):
        self.path = path
        self.header = header
        self.outcomes: dict[int, Outcome] = {}  # by row: two rows may claim one episode name

    def set(self, outcome: Outcome) -> None:
        self.outcomes[outcome.row] = outcome
        self.write()

    def write(self) -> None:
        counts = {}
        for outcome in self.outcomes.values():
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        doc = {**self.header, "counts": counts, "episodes": [asdict(o) for o in self.outcomes.values()]}
        with atomic_write(self.path, "w") as f:
            json.dump(doc, f, indent=1)
