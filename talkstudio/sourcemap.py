"""YAML loading that remembers where every value came from.

`load_yaml` returns plain Python data plus a `SourceMap` from data paths
(("scenes", 0, "lines", 3, "text")) to the line and column in the file, so
later validation can point at the exact place of a mistake. Duplicate mapping
keys, which PyYAML silently overwrites, are reported as errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from talkstudio.errors import InputError, Problem

Path_ = tuple  # a data path: str keys and int indices
# bounds checked before and while building, so a hostile or broken file is refused instead of
# exhausting memory (aliases that expand exponentially) or the stack (deep nesting)
MAX_BYTES = 8 << 20
MAX_DEPTH = 64
MAX_VALUES = 200_000


@dataclass
class SourceMap:
    file: Path
    values: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    # the text as written of scalars YAML turned into something else (yes -> True, 1.10 -> 1.1)
    raw: dict[Path_, str] = field(default_factory=dict)

    def locate(self, path: Path_, prefer_key: bool = False) -> tuple[int | None, int | None]:
        """Line and column (1-based) of the value at `path`, or of its nearest ancestor."""
        path = tuple(path)
        while True:
            table = (self.keys, self.values) if prefer_key else (self.values, self.keys)
            for positions in table:
                if path in positions:
                    return positions[path]
            if not path:
                return None, None
            path = path[:-1]
            prefer_key = False

    def problem(self, path: Path_, message: str, hint: str | None = None, prefer_key: bool = False) -> Problem:
        line, column = self.locate(path, prefer_key=prefer_key)
        return Problem(message, file=self.file, line=line, column=column, field=dotted(path) or None, hint=hint)


def dotted(path: Path_) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _position(mark: yaml.Mark) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


class _Builder:
    def __init__(self, source: SourceMap):
        self.source = source
        self.loader = yaml.SafeLoader("")
        self.problems: list[Problem] = []
        self.built = 0

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.built += 1
        if len(path) > MAX_DEPTH or self.built > MAX_VALUES:
            line, column = _position(node.start_mark)
            too = (f"nested more than {MAX_DEPTH} levels deep" if len(path) > MAX_DEPTH
                   else f"more than {MAX_VALUES} values once its aliases (*name) are expanded")
            raise InputError(Problem(f"the YAML is {too}", self.source.file, line, column,
                                     hint="a screenplay needs neither; check the aliases and brackets here"))
        self.source.values[path] = _position(node.start_mark)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        value = self.loader.construct_object(node, deep=True)
        if not isinstance(value, str) and value is not None:
            self.source.raw[path] = node.value
        elif isinstance(value, str):
            self._check_characters(value, node, path)
        return value

    def _check_characters(self, text: str, node: yaml.Node, path: Path_) -> None:
        """Control characters (NUL, escapes) and lone surrogates cannot be spoken, shown or written out."""
        bad = next((c for c in text if (ord(c) < 32 and c not in "\t\n\r") or ord(c) == 127
                    or 0xD800 <= ord(c) <= 0xDFFF), None)
        if bad is not None:
            line, column = _position(node.start_mark)
            self.problems.append(Problem(f"holds the control character U+{ord(bad):04X}, which cannot be spoken "
                                         f"or shown", self.source.file, line, column, dotted(path) or None,
                                         hint="remove it (an escape such as \\0 or \\x1b inside double quotes)"))

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict:
        self.loader.flatten_mapping(node)
        result: dict = {}
        for key_node, value_node in node.value:
            key = self.loader.construct_object(key_node, deep=True)
            if isinstance(key, (list, dict)):
                line, column = _position(key_node.start_mark)
                self.problems.append(Problem("a mapping key must be a plain word", self.source.file, line, column, dotted(path) or None))
                continue
            if key in result:
                first_line = self.source.keys[path + (key,)][0]
                line, column = _position(key_node.start_mark)
                self.problems.append(
                    Problem(
                        f"duplicate key '{key}' (first given on line {first_line})",
                        self.source.file, line, column, dotted(path + (key,)),
                        hint="each key may appear once in a mapping: rename or remove one of them",
                    )
                )
                continue
            self.source.keys[path + (key,)] = _position(key_node.start_mark)
            result[key] = self.build(value_node, path + (key,))
        return result


def load_yaml(file: Path) -> tuple[Any, SourceMap]:
    """Parse one YAML document; raise InputError with file:line:column on any mistake."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(Problem("file not found", file=file, hint="check the path")) from None
    except IsADirectoryError:
        raise InputError(Problem("is a folder, not a YAML file", file=file)) from None
    except UnicodeDecodeError as e:
        raise InputError(Problem(f"not UTF-8 text ({e.reason} at byte {e.start})", file=file, hint="save the file as UTF-8")) from None
    except OSError as e:
        raise InputError(Problem(f"cannot read: {e.strerror}", file=file, hint="check the file's permissions")) from None
    return parse_yaml(text, file)


def parse_yaml(text: str, file: Path) -> tuple[Any, SourceMap]:
    source = SourceMap(file=file)
    if len(text) > MAX_BYTES:
        raise InputError(Problem(f"is {len(text) // (1 << 20)} MiB: more than a screenplay can be "
                                 f"({MAX_BYTES >> 20} MiB)", file=file, hint="split it into episodes"))
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as e:
        raise InputError(_yaml_problem(e, file)) from None
    except yaml.YAMLError as e:
        raise InputError(Problem(f"not valid YAML: {e}", file=file)) from None
    except RecursionError:
        raise InputError(Problem("the YAML is nested too deeply (brackets or indentation thousands of levels "
                                 "deep)", file=file, hint="a screenplay needs at most a few levels")) from None
    if len(nodes) > 1:
        raise InputError(Problem("holds more than one YAML document (a line with '---')", file=file,
                                 hint="keep one screenplay per file"))
    if not nodes or nodes[0] is None:
        return None, source
    builder = _Builder(source)
    try:
        data = builder.build(nodes[0], ())
    except yaml.MarkedYAMLError as e:
        raise InputError(_yaml_problem(e, file)) from None
    if builder.problems:
        raise InputError(builder.problems)
    return data, source


def _yaml_problem(error: yaml.MarkedYAMLError, file: Path) -> Problem:
    mark = error.problem_mark or error.context_mark
    line, column = _position(mark) if mark else (None, None)
    message = f"not valid YAML: {error.problem or error.context}"
    if error.context and error.problem:
        message += f" ({error.context})"
    hint = "check the indentation and quoting around this line"
    if error.problem and "mapping values are not allowed" in error.problem:
        hint = "a line's text that contains ': ' must be quoted, e.g. ana: \"Note: this works\""
    elif error.problem and "found character '\\t'" in error.problem:
        hint = "YAML does not allow tabs for indentation: use spaces"
    return Problem(message, file=file, line=line, column=column, hint=hint)
