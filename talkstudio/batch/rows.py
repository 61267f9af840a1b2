"""Data rows for a batch: CSV, JSON Lines or YAML, each row remembering the line it came from.

A row that cannot be read (a JSON line that is not an object, a CSV line with more or fewer
values than the header) keeps its place and carries its problem, so one bad row is reported
with the others instead of stopping the batch. A data file that cannot be read at all is an
`InputError`.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talkstudio.errors import InputError, Problem
from talkstudio.sourcemap import parse_yaml

FORMATS_HINT = ("rows come from .csv (a header line, then one row per line), .jsonl (one JSON object per "
                "line) or .yaml (a list of mappings)")


@dataclass(frozen=True)
class Row:
    number: int  # 1-based, among the data rows
    line: int  # 1-based line of the data file where the row is
    values: dict[str, Any]
    problems: tuple[Problem, ...] = ()  # why the row could not be read


def read_rows(file: Path) -> list[Row]:
    """Every row of a .csv, .jsonl or .yaml file, in order."""
    file = Path(file)
    readers = {".csv": _csv_rows, ".jsonl": _jsonl_rows, ".ndjson": _jsonl_rows, ".yaml": _yaml_rows,
               ".yml": _yaml_rows}
    reader = readers.get(file.suffix.lower())
    if reader is None:
        raise InputError(Problem(f"unknown data format '{file.suffix}'", file=file, hint=FORMATS_HINT))
    rows = reader(_read_text(file), file)
    if not rows:
        raise InputError(Problem("holds no rows", file=file, hint=FORMATS_HINT))
    return rows


def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8-sig")  # spreadsheets save CSV with a byte-order mark
    except FileNotFoundError:
        raise InputError(Problem("data file not found", file=file, hint="check the --data path")) from None
    except IsADirectoryError:
        raise InputError(Problem("is a folder, not a data file", file=file, hint=FORMATS_HINT)) from None
    except UnicodeDecodeError as e:
        raise InputError(Problem(f"not UTF-8 text ({e.reason} at byte {e.start})", file=file,
                                 hint="save the file as UTF-8")) from None
    except OSError as e:
        raise InputError(Problem(f"cannot read: {e.strerror}", file=file,
                                 hint="check the file's permissions")) from None


def _csv_rows(text: str, file: Path) -> list[Row]:
    extra = object()  # DictReader's key for values beyond the header
    reader = csv.DictReader(io.StringIO(text, newline=""), restkey=extra, restval=None)  # type: ignore[arg-type]
    try:
        header = reader.fieldnames or []
        _check_header(header, file)
        rows = []
        for record in reader:
            number, line = len(rows) + 1, reader.line_num
            values = {name.strip(): value for name, value in record.items() if name is not extra and value is not None}
            rows.append(Row(number, line, values, _width_problems(record, header, extra, number, line, file)))
        return rows
    except csv.Error as e:
        raise InputError(Problem(f"not valid CSV: {e}", file=file, line=reader.line_num,
                                 hint="quote values that hold commas or line breaks with \"...\"")) from None


def _check_header(header: list[str], file: Path) -> None:
    names = [name.strip() for name in header]
    problems = [Problem(f"column {i + 1} of the header has no name", file=file, line=1,
                        hint="the first line names every column, e.g. episode,guest,question")
                for i, name in enumerate(names) if not name]
    problems += [Problem(f"column '{name}' is named twice in the header", file=file, line=1, field=name,
                         hint="give every column its own name")
                 for i, name in enumerate(names) if name and name in names[:i]]
    if problems:
        raise InputError(problems)


def _width_problems(record: dict, header: list[str], extra: object, number: int, line: int,
                    file: Path) -> tuple[Problem, ...]:
    if extra in record:
        return (Problem(f"row {number} has {len(header) + len(record[extra])} values but the header names "
                        f"{len(header)} columns", file=file, line=line,
                        hint="quote values that hold commas, e.g. \"Hello, world\""),)
    missing = [name.strip() for name in header if record.get(name) is None]
    if missing:
        return (Problem(f"row {number} has no value for {', '.join(missing)}", file=file, line=line,
                        field=missing[0], hint="give every column a value (an empty one is ,,)"),)
    return ()


def _jsonl_rows(text: str, file: Path) -> list[Row]:
    rows = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        number = len(rows) + 1
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            problem = Problem(f"row {number} is not valid JSON: {e.msg}", file=file, line=line_no, column=e.colno,
                              hint='one JSON object per line, e.g. {"guest": "Ada"}')
            rows.append(Row(number, line_no, {}, (problem,)))
            continue
        rows.append(Row(number, line_no, *_mapping_or_problem(value, number, line_no, file, "a JSON object {...}")))
    return rows


def _yaml_rows(text: str, file: Path) -> list[Row]:
    data, source = parse_yaml(text, file)
    if data is None:
        return []
    if not isinstance(data, list):
        raise InputError(source.problem((), "the rows must be a YAML list of mappings",
                                        hint="start every row with '- ', e.g.\n"
                                             "      - episode: e1\n        guest: Ada"))
    rows = []
    for i, value in enumerate(data):
        line = source.locate((i,))[0] or 1
        rows.append(Row(i + 1, line, *_mapping_or_problem(value, i + 1, line, file, "a mapping (column: value)")))
    return rows


def _mapping_or_problem(value: Any, number: int, line: int, file: Path, kind: str):
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}, ()
    return {}, (Problem(f"row {number} should be {kind}, got {type(value).__name__}", file=file, line=line,
                        hint="give each row its columns by name"),)
