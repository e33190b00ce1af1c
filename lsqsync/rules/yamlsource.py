"""YAML loading that remembers where every value came from.

Rule files come from people (and from untrusted pull requests), so loading is strict: the safe
loader only, duplicate keys are errors, and timestamps stay strings (PyYAML would otherwise turn
``2024-01-01`` into a ``date``). Each value's position is kept by its path, so that a schema
error's ``absolute_path`` maps straight to ``file:line:col``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PathKey = tuple[str | int, ...]


@dataclass(frozen=True, order=True)
class Location:
    file: str
    line: int  # 1-based
    col: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class YamlError(Exception):
    """The file is not valid YAML (or has a duplicate key); ``location`` says where."""

    def __init__(self, location: Location, message: str) -> None:
        super().__init__(message)
        self.location = location
        self.message = message


class _Resolver(yaml.resolver.Resolver):
    pass


# The safe resolver's implicit types, less timestamps: a date stays the string it was written as.
_Resolver.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
}


class _Loader(
    yaml.reader.Reader,
    yaml.scanner.Scanner,
    yaml.parser.Parser,
    yaml.composer.Composer,
    yaml.constructor.SafeConstructor,
    _Resolver,
):
    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        _Resolver.__init__(self)


@dataclass(frozen=True)
class Document:
    """A loaded YAML document: its data, and the position of every value by its path."""

    file: str
    data: Any
    positions: Mapping[PathKey, Location]

    def where(self, path: PathKey) -> Location:
        """The position of the value at ``path``, or of its closest ancestor that has one."""
        for end in range(len(path), -1, -1):
            found = self.positions.get(tuple(path[:end]))
            if found is not None:
                return found
        return Location(self.file, 1, 1)


def _location(file: str, mark: Any) -> Location:
    return Location(file, mark.line + 1, mark.column + 1)


def load(path: Path, display: str | None = None) -> Document:
    """Load one YAML file. Raises YamlError (bad YAML, duplicate keys) and OSError."""
    name = display or str(path)
    text = path.read_text(encoding="utf-8-sig")
    return loads(text, name)


def loads(text: str, file: str) -> Document:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        location = _location(file, mark) if mark else Location(file, 1, 1)
        raise YamlError(location, _yaml_message(e)) from None
    finally:
        loader.dispose()
    if node is None:
        return Document(file, None, {(): Location(file, 1, 1)})
    positions: dict[PathKey, Location] = {}
    data = _build(node, (), file, positions, _Loader(""))
    return Document(file, data, positions)


def _yaml_message(e: yaml.MarkedYAMLError) -> str:
    parts = [p for p in (e.context, e.problem) if p]
    return re.sub(r"\s+", " ", "; ".join(parts)) or "invalid YAML"


def _build(
    node: yaml.Node,
    path: PathKey,
    file: str,
    positions: dict[PathKey, Location],
    constructor: _Loader,
) -> Any:
    positions[path] = _location(file, node.start_mark)
    if isinstance(node, yaml.MappingNode):
        constructor.flatten_mapping(node)  # merge keys (<<) as the safe loader does them
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _build(key_node, (*path, "<key>"), file, {}, constructor)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise YamlError(
                    _location(file, key_node.start_mark), "a mapping key must be a scalar"
                )
            if key in out:
                raise YamlError(
                    _location(file, key_node.start_mark),
                    f"duplicate key {key!r} (first at line {positions[(*path, str(key))].line})",
                )
            key_path = (*path, str(key))
            out[key] = _build(value_node, key_path, file, positions, constructor)
            # A missing-property error points at the mapping; a bad value at the value. Keep the
            # key's own position too, for messages about the key itself.
            positions[(*path, str(key), "<key>")] = _location(file, key_node.start_mark)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(child, (*path, i), file, positions, constructor)
            for i, child in enumerate(node.value)
        ]
    try:
        return constructor.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as e:
        raise YamlError(_location(file, node.start_mark), _yaml_message(e)) from None


def walk_paths(data: Any, path: PathKey = ()) -> Iterator[PathKey]:
    """Every path in ``data`` (for tests and debugging)."""
    yield path
    if isinstance(data, dict):
        for key, value in data.items():
            yield from walk_paths(value, (*path, str(key)))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from walk_paths(value, (*path, i))
