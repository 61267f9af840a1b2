"""What the tool may write: never one of its inputs, never into a folder that is not its own, one
writer per output at a time.

Every command names its outputs and its inputs before it writes anything. An output that is an
input (the screenplay, a portrait, a recording, the cast file, a Fountain source) is refused with
both paths named. Folders the tool writes into carry a marker file; an existing folder without one
(and not empty) is the user's, and is refused. A lock in the output's folder keeps a second run
writing the same output from interleaving with the first.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from talkstudio.errors import InputError, Problem

MARKER = ".talkstudio-folder"  # in every folder the tool made; its text says what made it
# folders made by earlier versions carry their manifests instead
EARLIER_MARKERS = (".talkstudio-audio.json", ".talkstudio-video.json", ".talkstudio-podcast.json")
LOCK = ".talkstudio.lock"


def same_path(a: Path, b: Path) -> bool:
    """The same file: equal once resolved, or the same inode (hard links, bind mounts, case-folding)."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def refuse_inputs_as_outputs(outputs: Iterable[Path], inputs: Iterable[Path], option: str = "-o") -> None:
    """InputError naming every output that would overwrite an input."""
    inputs = [Path(p) for p in inputs if p is not None]
    problems = []
    for output in outputs:
        for given in inputs:
            if same_path(output, given):
                problems.append(Problem(f"the output {output} is the input {given}: writing it would destroy it",
                                        hint=f"choose another {option}"))
                break
    if problems:
        raise InputError(problems)


# what a render, audio or podcast run writes in its work folder (besides its markers and manifests)
WORK_FILES = ("mix.wav", "mix.m4a", "cues.json", "stages.json", "subtitles-burned.ass")
WORK_FOLDERS = ("tracks",)


def check_output_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise InputError(Problem(f"output path {folder} exists and is not a folder",
                                 hint="choose another -o, or remove the file"))


def claim_folder(folder: Path, made_by: str, inputs: Iterable[Path] = ()) -> None:
    """Make `folder` the tool's own before anything is written into it: create it with a marker, or
    accept it when it carries one (or an earlier version's manifest) or is empty. A folder of the
    user's (files and no marker) is refused, and so is any input where the tool writes its own files."""
    folder = Path(folder)
    check_output_folder(folder)
    inputs = [Path(p) for p in inputs if p is not None]
    refuse_inputs_as_outputs([folder / name for name in WORK_FILES], inputs)
    within = [p for p in inputs for sub in WORK_FOLDERS if p.resolve().is_relative_to((folder / sub).resolve())]
    if within:
        raise InputError(Problem(f"the input {within[0]} lies where talkstudio writes its tracks ({folder / 'tracks'})",
                                 hint="move it, or choose another -o"))
    if folder.is_dir():
        if any((folder / name).exists() for name in (MARKER, *EARLIER_MARKERS)):
            return
        if any(folder.iterdir()):
            raise InputError(Problem(
                f"the output folder {folder} exists and is not one talkstudio made (it has no {MARKER}): "
                f"writing its tracks, mix and cues there could replace your files",
                hint="choose another -o, or empty that folder"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text(f"made by talkstudio {made_by}; talkstudio writes in this folder\n")


def claim_video_outputs(target: Path, inputs: Iterable[Path], made_by: str):
    """Before a video is made: neither it, its subtitle sidecars nor its work folder may be an input,
    and the work folder must be the tool's; returns the lock to hold while writing them."""
    target = Path(target)
    work_dir = target.with_suffix("")
    inputs = list(inputs)
    refuse_inputs_as_outputs([target, work_dir, *(target.with_suffix(f".{kind}") for kind in SUBTITLE_KINDS)],
                             inputs)
    claim_folder(work_dir, made_by, inputs)
    return output_lock(work_dir, target)


SUBTITLE_KINDS = ("srt", "vtt", "ass")  # the sidecars written beside a video


@contextmanager
def output_lock(folder: Path, what: Path) -> Iterator[None]:
    """Hold the lock of an output folder for the whole run; a second run for the same output is refused."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK, "a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise InputError(Problem(f"{what} is being written by another talkstudio run ({holder})",
                                     hint="wait for it to finish, or choose another -o")) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


def require_suffix(target: Path, suffixes: tuple[str, ...], option: str = "-o") -> None:
    if Path(target).suffix.lower() not in suffixes:
        raise InputError(Problem(f"the output {target} does not end in {' or '.join(suffixes)}",
                                 hint=f"give {option} a file name such as out{suffixes[0]}"))
