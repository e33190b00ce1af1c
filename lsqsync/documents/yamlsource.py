"""YAML loading that remembers where every value came from.

Rule files come from people (and from untrusted pull requests), so loading is strict: the safe
loader only, no tags on mappings and lists, duplicate keys are errors, aliases cannot multiply a
small file into millions of values, and timestamps stay strings (PyYAML would otherwise turn
``2024-01-01`` into a ``date``). Each value's position is kept by its path, so that a schema
error's ``absolute_path`` maps straight to ``file:line:col``.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
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
    """The file is not valid YAML, or (in ``Document.problems``) one of its values cannot be
    used: a repeated key, a number that is not finite; ``location`` says where."""

    def __init__(self, location: Location, message: str) -> None:
        super().__init__(message)
        self.location = location
        self.message = message


class _Resolver(yaml.resolver.Resolver):
    pass


# The safe resolver's implicit types, less timestamps: a date stays the string it was written as.
# (Less the "=" value key too, which the safe loader turns back into a string.)
_NOT_RESOLVED = ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value")
_Resolver.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _NOT_RESOLVED]
    for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
}
_MERGE = "tag:yaml.org,2002:merge"
_PLAIN_COLLECTIONS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
# Aliases may repeat what they name, but not grow a small file into millions of values.
MAX_EXPANSION = 100_000
# No rule file comes near this; a bigger one is refused before it is parsed (parsing 20 MB of
# YAML takes most of a minute and a gigabyte).
MAX_BYTES = 2 * 2**20
TOO_DEEP = "the document nests too deeply (an alias inside itself, or hundreds of levels?)"


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
    """A loaded YAML document: its data, the position of every value by its path, and the
    problems found while building it that leave the rest checkable (a duplicate key: the first
    value is kept; a number that is not finite: it stays, the schema and the codec refuse it)."""

    file: str
    data: Any
    positions: Mapping[PathKey, Location]
    problems: tuple[YamlError, ...] = ()
    literal: frozenset[PathKey] = frozenset()  # strings written as literal blocks (|)

    def where(self, path: PathKey) -> Location:
        """The position of the value at ``path``, or of its closest ancestor that has one."""
        for end in range(len(path), -1, -1):
            found = self.positions.get(tuple(path[:end]))
            if found is not None:
                return found
        return Location(self.file, 1, 1)

    def line_of(self, path: PathKey, line: int) -> Location | None:
        """Where line ``line`` of the string at ``path`` is written: known for its first line,
        and for every line of a literal block (``|``), whose lines are the file's; None for a
        later line of a folded or quoted one."""
        at = self.where(path)
        if line <= 1:
            return at
        if path in self.literal:
            return Location(self.file, at.line + line - 1, at.col)
        return None


def _location(file: str, mark: Any) -> Location:
    return Location(file, mark.line + 1, mark.column + 1)


def load(path: Path, display: str | None = None) -> Document:
    """Load one YAML file. Raises YamlError (bad YAML, duplicate keys) and OSError."""
    name = display or str(path)
    with path.open("rb") as f:
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise YamlError(
            Location(name, 1, 1),
            f"larger than {MAX_BYTES // 2**20} MiB: not a rule or settings file",
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        before = data[: e.start]
        line = before.count(b"\n") + 1
        col = len(before) - (before.rfind(b"\n") + 1) + 1
        raise YamlError(
            Location(name, line, col), "not UTF-8 text (save the file as UTF-8)"
        ) from None
    return loads(text, name)


def loads(text: str, file: str) -> Document:
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as e:  # a control character, found on reading
        raise YamlError(_position(file, text, e.position), _reader_message(e)) from None
    try:
        node = loader.get_single_node()
    except RecursionError:
        raise YamlError(Location(file, 1, 1), TOO_DEEP) from None
    except yaml.MarkedYAMLError as e:
        raise YamlError(*_plain(e, file, text)) from None
    except yaml.reader.ReaderError as e:
        raise YamlError(_position(file, text, e.position), _reader_message(e)) from None
    finally:
        with contextlib.suppress(UnboundLocalError):
            loader.dispose()
    if node is None:
        return Document(file, None, {(): Location(file, 1, 1)})
    positions: dict[PathKey, Location] = {}
    repeats = _Repeats()
    try:
        data = _build(node, (), file, positions, _Loader(""), repeats)
    except RecursionError:
        raise YamlError(Location(file, 1, 1), TOO_DEEP) from None
    return Document(file, data, positions, tuple(repeats.problems), frozenset(repeats.literal))


def _position(file: str, text: str, offset: int) -> Location:
    before = text[:offset]
    return Location(file, before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1)


def _reader_message(e: yaml.reader.ReaderError) -> str:
    char = e.character
    shown = f"U+{char:04X}" if isinstance(char, int) else repr(char)
    return f"character {shown} is not allowed in YAML ({e.reason})"


def _yaml_message(e: yaml.MarkedYAMLError) -> str:
    """PyYAML's own words, with its token names (``<block end>``…) in plain ones."""
    parts = [p for p in (e.context, e.problem) if p]
    text = re.sub(r"\s+", " ", "; ".join(parts)) or "invalid YAML"
    for token, words in _TOKENS.items():
        text = text.replace(token, words)
    return text


_TOKENS = {
    "'<block end>'": "the end of the indented block",
    "<block end>": "the end of the indented block",
    "'<block mapping start>'": "a key indented differently",
    "'<block sequence start>'": "a list indented differently",
    "'<stream end>'": "the end of the file",
    "'<scalar>'": "more text",
}


def _plain(e: yaml.MarkedYAMLError, file: str, text: str) -> tuple[Location, str]:
    """Where the YAML went wrong and what to do about it, in plain words: PyYAML's own
    message names parser states ("while parsing a block mapping; expected <block end>, but
    found '<block mapping start>'") that say little to the person who wrote the file."""
    problem, context = e.problem or "", e.context or ""
    mark = e.problem_mark or e.context_mark
    at = _location(file, mark) if mark else Location(file, 1, 1)
    opened = _location(file, e.context_mark) if e.context_mark else at
    found = re.search(r"(?:found|got|character) '(.*?)'(?: that|$)", problem)
    seen = found.group(1) if found else ""
    if "expected <block end>" in problem:
        return at, _block_end(seen, opened)
    if "could not find expected ':'" in problem:
        return opened, (
            "a line with no ':' inside a mapping: write key: value, or indent a value that "
            "goes on from the line above further than its key"
        )
    if context in ("while parsing a flow mapping", "while parsing a flow sequence"):
        return at, _unclosed(context, opened, text)
    key = _key_column(text, at) if "mapping values are not allowed" in problem else None
    if key is not None:
        return Location(file, at.line, key), (
            "this key is indented further than the key above it, so YAML reads it as the "
            "rest of that key's value: line it up with the other keys"
        )
    unclosed = "end of stream" in problem and "quoted scalar" in context
    return (opened if unclosed else at), _scanned(e, seen)


def _key_column(text: str, at: Location) -> int | None:
    """The column of the word that the ':' at ``at`` ends, when that word is alone at the start
    of its line (``     set:``): a key indented too far, not a value with a colon in it."""
    lines = text.splitlines()
    line = lines[at.line - 1] if at.line <= len(lines) else ""
    found = re.fullmatch(r"(\s*)[\w.-]+", line[: at.col - 1])
    return len(found.group(1)) + 1 if found else None


def _scanned(e: yaml.MarkedYAMLError, seen: str) -> str:
    """The messages of PyYAML's scanner and composer, in plain words."""
    problem, context = e.problem or "", e.context or ""
    quote_it = 'put the value in quotes (e.g. note: "Stage: Won")'
    if "mapping values are not allowed here" in problem:
        return f"a ': ' inside a value: {quote_it}, or check the indentation"
    if "found unexpected end of stream" in problem and "quoted scalar" in context:
        return "a quoted value that is never closed: its closing quote is missing"
    if "cannot start any token" in problem:
        if seen == "\\t":
            return "a tab character: YAML indents with spaces only"
        return f"'{seen}' cannot start a value: put the value in quotes (e.g. \"{seen}…\")"
    if "unknown escape character" in problem:
        return (
            f"'\\{seen}' is not an escape of a double-quoted value: write \\\\ for a "
            "backslash, or put the value in single quotes"
        )
    if "duplicate anchor" in context and e.context_mark is not None:
        name, first = context.split("'")[1], e.context_mark.line + 1
        return f"the anchor &{name} is defined twice (first at line {first})"
    if problem.startswith("found undefined alias"):
        name = problem.split("'")[1]
        return f"the alias *{name} names no anchor &{name} defined before it"
    if "single document" in context:
        return "a second document (a line '---'): a file holds one document"
    if "expected chomping or indentation indicators" in problem:
        return "after | or > only -, + or a digit may follow: start the text on the next line"
    if "expected alphabetic or numeric character" in problem and "while scanning an" in context:
        return f"& and * start an anchor or alias and need a name: {quote_it}"
    return _yaml_message(e)


def _block_end(seen: str, opened: Location) -> str:
    """The message for "expected <block end>, but found X": something where the indented
    block that starts at ``opened`` has ended, or goes on in another column."""
    if seen == "-":
        return (
            "a list item ('- ') where a key was expected: indent the list under its key, or "
            "line it up with the list's other items"
        )
    if seen == "?":
        return "a key: value line among list items: each item of this list starts with '- '"
    if seen == "<scalar>":
        return (
            "more text after a complete value: a value that starts with a quote ends at the "
            'closing quote (quote the whole value, e.g. note: "it\'s done")'
        )
    return (
        f"this line is indented differently from the lines above it (the block at line "
        f"{opened.line}): the keys of one mapping start in the same column, indented by spaces"
    )


def _unclosed(context: str, opened: Location, text: str) -> str:
    brackets = "{…}" if "mapping" in context else "[…]"
    message = (
        f"the {brackets} opened at line {opened.line}, column {opened.col} is not closed "
        f"with '{brackets[-1]}', or its entries need a ',' between them"
    )
    line = text.splitlines()[opened.line - 1] if opened.line <= len(text.splitlines()) else ""
    if "{{" in line or "{%" in line:
        message += '; a template goes in quotes: "{{ … }}"'
    return message


def _build(
    node: yaml.Node,
    path: PathKey,
    file: str,
    positions: dict[PathKey, Location],
    constructor: _Loader,
    repeats: _Repeats,
) -> Any:
    repeats.count(node, file)
    positions[path] = _value_position(node, path, file, repeats)
    if node.tag not in _PLAIN_COLLECTIONS and not isinstance(node, yaml.ScalarNode):
        # (!!python/object/apply:os.system [..] would otherwise load as a plain list)
        raise YamlError(_location(file, node.start_mark), f"the tag {node.tag!r} is not allowed")
    if isinstance(node, yaml.MappingNode):
        # Merge keys (<<) as the safe loader does them: the mapping's own keys override merged
        # ones, and of several merged mappings the first listed wins.
        own = [(k, v) for k, v in node.value if k.tag != _MERGE]
        pairs = [(k, v, False) for k, v in _merged(node, file, {id(node)})]
        out: dict[Any, Any] = {}
        own_keys: set[Any] = set()
        for key_node, value_node, is_own in [*pairs, *((k, v, True) for k, v in own)]:
            key = _build(key_node, (*path, "<key>"), file, {}, constructor, repeats)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise _not_a_key(key_node, file)
            if key in own_keys:
                first = positions[(*path, str(key), "<key>")].line
                repeats.problems.append(
                    YamlError(
                        _location(file, key_node.start_mark),
                        f"duplicate key {key!r} (first at line {first})",
                    )
                )
                continue
            if key in out and not is_own:
                continue
            if is_own:
                own_keys.add(key)
            key_path = (*path, str(key))
            out[key] = _build(value_node, key_path, file, positions, constructor, repeats)
            # A missing-property error points at the mapping; a bad value at the value. Keep the
            # key's own position too, for messages about the key itself.
            positions[(*path, str(key), "<key>")] = _location(file, key_node.start_mark)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(child, (*path, i), file, positions, constructor, repeats)
            for i, child in enumerate(node.value)
        ]
    try:
        value = constructor.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as e:
        raise YamlError(_location(file, node.start_mark), _yaml_message(e)) from None
    if isinstance(value, float) and not math.isfinite(value):
        repeats.problems.append(
            YamlError(_location(file, node.start_mark), f"{node.value} is not a finite number")
        )
    return value


def _value_position(node: yaml.Node, path: PathKey, file: str, repeats: _Repeats) -> Location:
    """Where ``node``'s value is: for a block scalar, where its text starts — on the line after
    its | or >, so that messages about it point there (a literal one's lines are noted)."""
    if not isinstance(node, yaml.ScalarNode) or node.style not in ("|", ">"):
        return _location(file, node.start_mark)
    if node.style == "|":
        repeats.literal.add(path)
    return _block_start(file, node.start_mark)


def _block_start(file: str, mark: Any) -> Location:
    """Where the text of the block scalar whose indicator (| or >) is at ``mark`` starts: the
    next line (its first line of text, or a blank one it keeps), at the block's indentation."""
    text: str = mark.buffer or ""
    start = text.find("\n", mark.pointer) + 1
    if start <= 0:
        return _location(file, mark)
    first = text[start:].lstrip("\n")  # the block's indentation is its first text line's
    indent = len(first) - len(first.lstrip(" "))
    return Location(file, mark.line + 2, indent + 1)


def _not_a_key(node: yaml.Node, file: str) -> YamlError:
    """Why a mapping or list cannot be a key: usually a template written without quotes, whose
    ``{{`` YAML reads as a mapping inside a mapping (reported where the template starts)."""
    mark = node.start_mark
    text = mark.buffer or ""
    at = _location(file, mark)
    if mark.pointer > 0 and text[mark.pointer - 1 : mark.pointer + 1] == "{{":
        return YamlError(
            Location(file, at.line, at.col - 1),
            'a template needs quotes: write "{{ … }}" (without them YAML reads {{ as a mapping)',
        )
    return YamlError(at, "a mapping key must be a scalar")


@dataclass
class _Repeats:
    """How many values aliases have repeated so far (an alias of aliases multiplies them)."""

    seen: set[int] = field(default_factory=set)
    repeated: int = 0
    problems: list[YamlError] = field(default_factory=list)  # see Document.problems
    literal: set[PathKey] = field(default_factory=set)  # see Document.literal

    def count(self, node: yaml.Node, file: str) -> None:
        if id(node) not in self.seen:
            self.seen.add(id(node))
            return
        self.repeated += 1
        if self.repeated > MAX_EXPANSION:
            raise YamlError(
                _location(file, node.start_mark),
                f"aliases repeat more than {MAX_EXPANSION:,} values (an alias of aliases?)",
            )


def _merged(node: yaml.MappingNode, file: str, seen: set[int]) -> list[tuple[Any, Any]]:
    """The key/value pairs ``node``'s merge keys bring in, the winning one of a key first; each
    merged mapping once (what it brings the second time never wins)."""
    pairs: list[tuple[Any, Any]] = []
    for key_node, value_node in node.value:
        if key_node.tag != _MERGE:
            continue
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                raise YamlError(
                    _location(file, source.start_mark),
                    "a merge key (<<) takes a mapping or a list of mappings",
                )
            if id(source) in seen:
                continue
            seen.add(id(source))
            pairs.extend((k, v) for k, v in source.value if k.tag != _MERGE)
            pairs.extend(_merged(source, file, seen))
    return pairs


def walk_paths(data: Any, path: PathKey = ()) -> Iterator[PathKey]:
    """Every path in ``data`` (for tests and debugging)."""
    yield path
    if isinstance(data, dict):
        for key, value in data.items():
            yield from walk_paths(value, (*path, str(key)))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from walk_paths(value, (*path, i))
