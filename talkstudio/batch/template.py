"""Screenplays from a template: Jinja2 over YAML, one per data row, each checked like any screenplay.

Every column of a row is a template variable (plus `episode`, the episode's name, and
`row_number`); a column the template uses but the row lacks is an error naming both. Shared
parts (a cast, an intro scene) are `{% include %}`d by name from the template's folder.
Each row's screenplay is written to OUT/<episode>/screenplay.yaml, so a problem points at a real
file and line, and, when the value at fault came from a column, at that row and column of the
data file. Relative paths (portraits, stages, recordings) are written as absolute paths resolved
against the template's folder, where they were written.
"""

from __future__ import annotations

import json
import os
import re
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment

from talkstudio.batch.rows import Row
from talkstudio.cache import atomic_write
from talkstudio.checks import load_screenplay
from talkstudio.errors import InputError, Problem
from talkstudio.outputs import claim_folder
from talkstudio.screenplay import COLOUR_PATTERN

SCREENPLAY_NAME = "screenplay.yaml"
# where the screenplay holds file paths ("*" is any cast id or index)
PATH_FIELDS = (
    ("voice", "model"), ("voice", "reference"), ("video", "faces", "insightface_root"),
    ("cast", "*", "image"), ("cast", "*", "voice", "model"), ("cast", "*", "voice", "reference"),
    ("scenes", "*", "stage"), ("scenes", "*", "background"), ("scenes", "*", "lines", "*", "audio"),
)


@dataclass
class Episode:
    name: str  # names its folder and video: OUT/<name>/, OUT/<name>.mp4
    row: Row
    script: Path  # OUT/<name>/screenplay.yaml
    target: Path  # OUT/<name>.mp4
    problems: list[Problem] = field(default_factory=list)  # empty when the screenplay is valid
    scenes: list[str] = field(default_factory=list)  # scene ids
    backend: str | None = None  # video.backend of the screenplay


class _FolderLoader(jinja2.FileSystemLoader):
    """Templates from one folder; a name that resolves outside it (through a symbolic link) is not found."""

    def __init__(self, folder: Path):
        super().__init__(folder)
        self.folder = Path(folder).resolve()

    def get_source(self, environment, template):
        source, filename, uptodate = super().get_source(environment, template)
        if not Path(filename).resolve().is_relative_to(self.folder):
            raise jinja2.TemplateNotFound(f"{template} (it leads outside the template's folder {self.folder})")
        return source, filename, uptodate


def load_template(file: Path) -> jinja2.Template:
    file = Path(file)
    if not file.is_file():
        raise InputError(Problem("template not found", file=file,
                                 hint="give a screenplay template, e.g. templates/interview/episode.yaml.j2"))
    # sandboxed: a template from someone else reaches no Python objects (no code runs during --check
    # or a render); included parts are read from the template's folder only, never through a link out of it
    environment = ImmutableSandboxedEnvironment(
        loader=_FolderLoader(file.parent), undefined=jinja2.StrictUndefined, autoescape=False,
        keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)  # block tags leave no blank lines in YAML
    environment.filters["yaml"] = _yaml_scalar
    try:
        return environment.get_template(file.name)
    except jinja2.TemplateError as error:
        raise InputError(_template_problem(error, file)) from None


def _yaml_scalar(value: Any) -> str:
    """`{{ text | yaml }}`: a value written as a quoted YAML scalar, whatever colons or quotes it holds."""
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()  # a missing column stays an error, not the text "null"
    return json.dumps(value, ensure_ascii=False)  # JSON strings are YAML double-quoted scalars


def prepare_episodes(template_file: Path, data_file: Path, rows: list[Row], out_dir: Path,
                     any_path: bool = False) -> list[Episode]:
    """Write every row's screenplay and check it; problems are kept per episode, never raised.

    A row value that names a file must lie in the template's folder or the data file's folder (data
    from someone else cannot make an episode read files from anywhere), unless `any_path`."""
    template = load_template(template_file)
    names = _episode_names(rows)
    roots = [Path(template_file).resolve().parent, Path(data_file).resolve().parent]
    episodes = []
    for row in rows:
        name = names[row.number]
        episode = Episode(name, row, out_dir / name / SCREENPLAY_NAME, out_dir / f"{name}.mp4", list(row.problems))
        episode.problems += _duplicate_name(episode, rows, names, data_file) + _unusable_name(episode, data_file)
        if not any_path:
            episode.problems += _paths_outside(row, roots, data_file)
        if not episode.problems:
            try:
                _write_and_check(episode, template, Path(template_file), data_file)
            except InputError as error:  # e.g. its folder is a user's: this row only
                episode.problems += error.problems
            except OSError as error:  # the file system refuses this row's files: this row only
                episode.problems.append(Problem(f"row {row.number}: cannot write episode '{name}': {error.strerror}",
                                                file=data_file, line=row.line, field="episode"))
        episodes.append(episode)
    return episodes


def _paths_outside(row: Row, roots: list[Path], data_file: Path) -> list[Problem]:
    """Row values written as paths (absolute, from home, or climbing with ..) that lead outside `roots`."""
    problems = []
    for column, value in row.values.items():
        text = str(value) if value is not None else ""
        parts = Path(text).parts
        if not (text.startswith(("/", "~")) or ".." in parts):
            continue
        resolved = [(root / Path(text).expanduser()).resolve() for root in roots]
        if not any(path.is_relative_to(root) for path, root in zip(resolved, roots)):
            problems.append(Problem(f"row {row.number}: '{text}' leads outside the template's folder "
                                    f"({roots[0]}) and the data's folder ({roots[1]})", file=data_file,
                                    line=row.line, field=column,
                                    hint="put the file beside the template or the data, or pass --any-path "
                                         "if you trust this data"))
    return problems


MAX_NAME = 120  # file systems allow 255 bytes; the video and its sidecars add suffixes
RESERVED_NAMES = ("batch-report.json", "batch-report")


def _unusable_name(episode: Episode, data_file: Path) -> list[Problem]:
    """A name that cannot name files here: too long, or the batch's own report."""
    if len(episode.name.encode()) > MAX_NAME:
        return [Problem(f"row {episode.row.number}: the episode name is {len(episode.name.encode())} bytes long, "
                        f"over {MAX_NAME}", file=data_file, line=episode.row.line, field="episode",
                        hint="give the row a shorter episode (or id) value")]
    if episode.name.lower() in RESERVED_NAMES:
        return [Problem(f"row {episode.row.number}: '{episode.name}' is the name of the batch's report",
                        file=data_file, line=episode.row.line, field="episode", hint="give the row another name")]
    return []


def _episode_names(rows: list[Row]) -> dict[int, str]:
    """From an `episode` or `id` column, made safe as a file name; else the row number."""
    names = {}
    for row in rows:
        given = row.values.get("episode", row.values.get("id"))
        safe = re.sub(r"[^A-Za-z0-9._-]+", "-", str(given)).strip("-.") if given not in (None, "") else ""
        names[row.number] = safe or f"episode-{row.number:03d}"
    return names


def _duplicate_name(episode: Episode, rows: list[Row], names: dict[int, str], data_file: Path) -> list[Problem]:
    earlier = [r.number for r in rows if r.number < episode.row.number and names[r.number] == episode.name]
    if not earlier:
        return []
    return [Problem(f"row {episode.row.number}: episode '{episode.name}' is also row {earlier[0]}'s",
                    file=data_file, line=episode.row.line, field="episode",
                    hint="give every row its own episode (or id) value; it names the output files")]


def _write_and_check(episode: Episode, template: jinja2.Template, template_file: Path, data_file: Path) -> None:
    row = episode.row
    try:
        text = template.render({"episode": episode.name, "row_number": row.number, **row.values})
    except (jinja2.TemplateSyntaxError, jinja2.TemplateNotFound) as error:  # an included part: the template's fault
        raise InputError(_template_problem(error, template_file)) from None
    except Exception as error:  # noqa: BLE001 - the template's own expressions failing on this row's values
        episode.problems.append(_render_problem(error, row, template_file, data_file))
        return
    text = _anchor_paths(text, template_file.parent.resolve())
    claim_folder(episode.script.parent, "batch")
    _write_if_changed(episode.script, text)
    try:
        screenplay = load_screenplay(episode.script)
    except InputError as error:
        episode.problems += [_on_row(problem, row, episode.script, text, data_file) for problem in error.problems]
        return
    episode.scenes = [scene.id for scene in screenplay.scenes]
    episode.backend = screenplay.video.backend


def _write_if_changed(path: Path, text: str) -> None:
    """Untouched when the same, so a re-run sees the same file."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    with atomic_write(path, "w") as f:
        f.write(text)


def _template_problem(error: jinja2.TemplateError, template_file: Path) -> Problem:
    if isinstance(error, jinja2.TemplateNotFound):
        return Problem(f"included part '{error.name}' not found in {template_file.parent}", file=template_file,
                       hint="shared parts are named relative to the template's folder")
    line = getattr(error, "lineno", None)
    where = Path(getattr(error, "filename", None) or template_file)
    return Problem(f"template: {error.message}", file=where, line=line,
                   hint="see https://jinja.palletsprojects.com/templates/ for the syntax")


def _render_problem(error: Exception, row: Row, template_file: Path, data_file: Path) -> Problem:
    at = _template_line(error, template_file.parent)
    missing = re.fullmatch(r"'([^']+)' is undefined", str(error))
    if missing:
        column = missing[1]
        return Problem(f"row {row.number}: the template uses '{column}'{at} but the row has no such column",
                       file=data_file, line=row.line, field=column,
                       hint=f"add the column '{column}', or give it a default: {{{{ {column} | default('...') }}}}")
    return Problem(f"row {row.number}: the template fails on this row{at}: {type(error).__name__}: {error}",
                   file=data_file, line=row.line,
                   hint="check this row's values against what the template does with them")


def _template_line(error: Exception, folder: Path) -> str:
    """' (episode.yaml.j2:12)': the template line that failed (Jinja puts template frames in tracebacks)."""
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if f.filename and Path(f.filename).suffix != ".py"
              and Path(f.filename).resolve().is_relative_to(folder.resolve())]
    return f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""


def _on_row(problem: Problem, row: Row, script: Path, text: str, data_file: Path) -> Problem:
    """A problem of the row's screenplay told as one of the row: at the data file's row and column when the
    value at fault came from a column, else at the screenplay's line."""
    lines = text.splitlines()
    if problem.file != script or problem.line is None or problem.line > len(lines):
        return replace(problem, message=f"row {row.number}: {problem.message}")
    span = _value_span(text, problem.line, problem.column)
    column = _column_at(lines[problem.line - 1], span, row.values)
    if column is None:
        return replace(problem, message=f"row {row.number}: {problem.message}")
    field_ = f"{problem.field}: " if problem.field else ""
    hint = problem.hint
    if problem.field and _is_path_field(problem.field):
        hint = "paths in a template are relative to the template's folder; check the spelling"
    return Problem(f"row {row.number}: {field_}{problem.message} (in {problem.where()})", file=data_file,
                   line=row.line, field=column, hint=hint)


def _is_path_field(dotted: str) -> bool:
    path = tuple(re.sub(r"\[\d+\]", ".0", dotted).split("."))
    return any(_matches(path, pattern) for pattern in PATH_FIELDS)


def _value_span(text: str, line: int, column: int | None) -> tuple[int, int] | None:
    """Where on its line (0-based, end excluded) the YAML value starting at line:column is written."""
    if column is None:
        return None
    try:
        nodes = [yaml.compose(text, Loader=yaml.SafeLoader)]
    except yaml.YAMLError:
        return column - 1, column
    while nodes:
        node = nodes.pop(0)
        if node is None:
            continue
        if (node.start_mark.line, node.start_mark.column) == (line - 1, column - 1):
            return column - 1, node.end_mark.column if node.end_mark.line == line - 1 else len(text)
        if isinstance(node, yaml.MappingNode):
            nodes += [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            nodes += node.value
    return column - 1, column


def _column_at(text: str, span: tuple[int, int] | None, values: dict[str, Any]) -> str | None:
    """The column whose value is written on this screenplay line, inside or nearest the value at fault."""
    best: tuple[int, int, str] | None = None  # (distance, -length, column)
    for name, value in values.items():
        for written in {form for leaf in _leaves(value) for form in (leaf, json.dumps(leaf, ensure_ascii=False)[1:-1])}:
            for match in re.finditer(rf"(?<![\w.]){re.escape(written)}(?!\w)", text):
                distance = 0 if span is None else max(span[0] - match.end(), match.start() - span[1], 0)
                candidate = (distance, -len(written), name)
                best = candidate if best is None or candidate < best else best
    return best[2] if best else None


def _leaves(value: Any):
    """The non-empty scalars of a value, as text (a YAML or JSON row's value may be a list or mapping)."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    elif value is not None and str(value).strip():
        yield str(value)


def _anchor_paths(text: str, base: Path) -> str:
    """The YAML with every relative file path made absolute against `base`, other bytes (and lines) unchanged."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return text  # written as it is: loading it reports the mistake with file:line:column
    edits = []
    for path, node in _scalars(root, ()):
        value = node.value
        if (any(_matches(path, pattern) for pattern in PATH_FIELDS) and value and not value.startswith("~")
                and not Path(value).is_absolute() and not COLOUR_PATTERN.match(value)):
            edits.append((node.start_mark.index, node.end_mark.index,
                          json.dumps(os.path.normpath(base / value), ensure_ascii=False)))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def _scalars(node: yaml.Node | None, path: tuple):
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                yield from _scalars(value, path + (key.value,))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _scalars(item, path + (index,))
    elif isinstance(node, yaml.ScalarNode):
        yield path, node


def _matches(path: tuple, pattern: tuple) -> bool:
    return len(path) == len(pattern) and all(p == "*" or p == part for part, p in zip(path, pattern))
