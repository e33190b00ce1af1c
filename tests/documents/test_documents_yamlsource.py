"""YAML with positions: where every key and value is, merge keys, strings for timestamps, and
the problems a YAML file can have, each at its place."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from lsqsync.documents import yamlsource
from lsqsync.documents.yamlsource import (
    MAX_EXPANSION,
    TOO_DEEP,
    Location,
    YamlError,
    load,
    loads,
    walk_paths,
)

RULES = """\
version: 1
rules:
  - name: close-signed-deals
    opportunity_type: 12003
    where: {Status: Open, mx_Custom_6: {gt: 100000}}
    set:
      Status: Won
      mx_Custom_9: "Closed by {{ rule.name }}"
"""


def _error(text: str) -> tuple[str, str]:
    with pytest.raises(YamlError) as e:
        loads(text, "f.yml")
    return str(e.value.location), e.value.message


def test_values_and_keys_have_their_positions() -> None:
    doc = loads(RULES, "rules/q4.yml")
    at = {path: str(location) for path, location in doc.positions.items()}
    assert at == {
        (): "rules/q4.yml:1:1",
        ("version",): "rules/q4.yml:1:10",
        ("version", "<key>"): "rules/q4.yml:1:1",
        ("rules",): "rules/q4.yml:3:3",
        ("rules", "<key>"): "rules/q4.yml:2:1",
        ("rules", 0): "rules/q4.yml:3:5",
        ("rules", 0, "name"): "rules/q4.yml:3:11",
        ("rules", 0, "name", "<key>"): "rules/q4.yml:3:5",
        ("rules", 0, "opportunity_type"): "rules/q4.yml:4:23",
        ("rules", 0, "opportunity_type", "<key>"): "rules/q4.yml:4:5",
        ("rules", 0, "where"): "rules/q4.yml:5:12",
        ("rules", 0, "where", "<key>"): "rules/q4.yml:5:5",
        ("rules", 0, "where", "Status"): "rules/q4.yml:5:21",
        ("rules", 0, "where", "Status", "<key>"): "rules/q4.yml:5:13",
        ("rules", 0, "where", "mx_Custom_6"): "rules/q4.yml:5:40",
        ("rules", 0, "where", "mx_Custom_6", "<key>"): "rules/q4.yml:5:27",
        ("rules", 0, "where", "mx_Custom_6", "gt"): "rules/q4.yml:5:45",
        ("rules", 0, "where", "mx_Custom_6", "gt", "<key>"): "rules/q4.yml:5:41",
        ("rules", 0, "set"): "rules/q4.yml:7:7",
        ("rules", 0, "set", "<key>"): "rules/q4.yml:6:5",
        ("rules", 0, "set", "Status"): "rules/q4.yml:7:15",
        ("rules", 0, "set", "Status", "<key>"): "rules/q4.yml:7:7",
        ("rules", 0, "set", "mx_Custom_9"): "rules/q4.yml:8:20",
        ("rules", 0, "set", "mx_Custom_9", "<key>"): "rules/q4.yml:8:7",
    }
    assert set(walk_paths(doc.data)) == {p for p in doc.positions if "<key>" not in p}


def test_where_falls_back_to_the_closest_ancestor() -> None:
    doc = loads(RULES, "q4.yml")
    assert doc.where(("rules", 0, "set", "Owner")) == Location("q4.yml", 7, 7)
    assert doc.where(("rules", 3, "name")) == Location("q4.yml", 3, 3)
    assert doc.where(("nope",)) == Location("q4.yml", 1, 1)
    assert loads("# nothing\n", "e.yml").where(("rules",)) == Location("e.yml", 1, 1)


def test_an_empty_document_has_no_data() -> None:
    for text in ("", "# only a comment\n"):
        doc = loads(text, "e.yml")
        assert (doc.data, dict(doc.positions)) == (None, {(): Location("e.yml", 1, 1)})
    doc = loads("---\n", "e.yml")
    assert (doc.data, dict(doc.positions)) == (None, {(): Location("e.yml", 2, 1)})


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2024-01-01", "2024-01-01"),
        ("2024-01-01 09:30:00", "2024-01-01 09:30:00"),
        ("2024-06-30T18:00:00Z", "2024-06-30T18:00:00Z"),
        ("2001-12-14t21:59:43.10-05:00", "2001-12-14t21:59:43.10-05:00"),
        ("'2024-01-01'", "2024-01-01"),
        ("12003", 12003),
        ("0x10", 16),
        ("2.5", 2.5),
        ("1.0e+3", 1000.0),
        ("1e3", "1e3"),
        ("true", True),
        ("no", False),
        ("null", None),
        ("~", None),
        ("=", "="),
        ("'12003'", "12003"),
        ("!!str 12003", "12003"),
    ],
)
def test_scalars_resolve_as_the_safe_loader_does_but_timestamps_stay_strings(
    text: str, value: object
) -> None:
    data = loads(f"v: {text}\n", "f.yml").data
    assert data == {"v": value}
    assert type(data["v"]) is type(value)


def test_equals_as_a_key_is_a_string() -> None:
    assert loads("=: 1\n", "f.yml").data == {"=": 1}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The mapping's own keys override merged ones, in the merged key's place.
        ("a: &x {p: 1, q: 2}\nb:\n  <<: *x\n  p: 3\n", {"p": 3, "q": 2}),
        # Of several merged mappings the first listed wins.
        ("a: &x {p: 1, q: 2}\nc: &y {p: 5, r: 6}\nb:\n  <<: [*x, *y]\n  s: 3\n",
         {"p": 1, "q": 2, "r": 6, "s": 3}),
        # A merged mapping brings what it merged itself.
        ("a: &x {p: 1}\nb: &y {<<: *x, q: 2}\nc: {<<: *y, r: 3}\n", {"p": 1, "q": 2, "r": 3}),
        # ... with its own keys winning over those (PyYAML 6.0.4 gives {p: 1} here).
        ("a: &x {p: 1}\nb: &y {<<: *x, p: 2}\nc: {<<: *y}\n", {"p": 2}),
        ("a: &x {p: 1}\nb: {<<: [*x, *x], q: 2}\n", {"p": 1, "q": 2}),
        ("a: &x {p: 1}\nb: {<<: [], q: 2}\n", {"q": 2}),
    ],
)  # fmt: skip
def test_merge_keys(text: str, expected: dict[str, int]) -> None:
    assert list(loads(text, "f.yml").data.values())[-1] == expected


def test_an_overriding_key_takes_the_merged_keys_place_as_with_the_safe_loader() -> None:
    text = "a: &x {p: 1, q: 2}\nb: {r: 3, <<: *x, p: 4}\n"
    data = loads(text, "f.yml").data
    assert (list(data["b"].items()), data) == ([("p", 4), ("q", 2), ("r", 3)], yaml.safe_load(text))


def test_aliases_repeat_their_value() -> None:
    text = "a: &x {p: [1, 2]}\nb: *x\nc: [*x, *x]\n"
    doc = loads(text, "f.yml")
    assert doc.data == yaml.safe_load(text)
    assert (doc.where(("c", 1, "p", 0)), doc.where(("c", 1))) == (
        Location("f.yml", 1, 12),
        Location("f.yml", 1, 4),  # an alias's value is where its anchor is
    )


def test_a_merged_value_is_positioned_where_it_is_written() -> None:
    doc = loads("a: &x {p: 1, q: 2}\nb:\n  <<: *x\n  p: 3\n", "f.yml")
    assert doc.where(("b", "p")) == Location("f.yml", 4, 6)
    assert doc.where(("b", "q")) == Location("f.yml", 1, 17)


@pytest.mark.parametrize(
    ("text", "location", "message"),
    [
        # PyYAML's parser states, in plain words, at the place to fix
        ("a: [1\n", "f.yml:2:1",
         "the […] opened at line 1, column 4 is not closed with ']', or its entries need a ',' "
         "between them"),
        ("a: {b: 1 c: 2}\n", "f.yml:1:11",
         "the {…} opened at line 1, column 4 is not closed with '}', or its entries need a ',' "
         "between them"),
        ("a:\n\t- 1\n", "f.yml:2:1", "a tab character: YAML indents with spaces only"),
        ("a: 1\n b: 2\n", "f.yml:2:2",
         "this key is indented further than the key above it, so YAML reads it as the rest of "
         "that key's value: line it up with the other keys"),
        ("note: Stage: Won\n", "f.yml:1:12",
         "a ': ' inside a value: put the value in quotes (e.g. note: \"Stage: Won\"), or check "
         "the indentation"),
        ("a:\n  b: 1\n c: 2\n", "f.yml:3:2",
         "this line is indented differently from the lines above it (the block at line 1): the "
         "keys of one mapping start in the same column, indented by spaces"),
        ("a:\n  b: 1\n  c\n  d: 2\n", "f.yml:3:3",
         "a line with no ':' inside a mapping: write key: value, or indent a value that goes on "
         "from the line above further than its key"),
        ("a: 1\n- b\n", "f.yml:2:1",
         "a list item ('- ') where a key was expected: indent the list under its key, or line it "
         "up with the list's other items"),
        ("- a\nb: 1\n", "f.yml:2:1",
         "a key: value line among list items: each item of this list starts with '- '"),
        ("a: 'it's'\n", "f.yml:1:8",
         "more text after a complete value: a value that starts with a quote ends at the closing "
         "quote (quote the whole value, e.g. note: \"it's done\")"),
        ('a: "abc\nb: 2\n', "f.yml:1:4",
         "a quoted value that is never closed: its closing quote is missing"),
        ('a: "\\q"\n', "f.yml:1:6",
         "'\\q' is not an escape of a double-quoted value: write \\\\ for a backslash, or put "
         "the value in single quotes"),
        ("a: @x\n", "f.yml:1:4", "'@' cannot start a value: put the value in quotes (e.g. \"@…\")"),
        ("a: |x\n  b\n", "f.yml:1:5",
         "after | or > only -, + or a digit may follow: start the text on the next line"),
        ("a: &\n", "f.yml:1:5",
         "& and * start an anchor or alias and need a name: put the value in quotes (e.g. note: "
         "\"Stage: Won\")"),
        ("a: &x 1\nb: &x 2\n", "f.yml:2:4", "the anchor &x is defined twice (first at line 1)"),
        ("a: {{ opp.Status }}\n", "f.yml:1:4",
         'a template needs quotes: write "{{ … }}" (without them YAML reads {{ as a mapping)'),
        ("set: {Status: {{ opp.x }}}\n", "f.yml:1:15",
         'a template needs quotes: write "{{ … }}" (without them YAML reads {{ as a mapping)'),
        ("a: 1\n---\nb: 2\n", "f.yml:2:1",
         "a second document (a line '---'): a file holds one document"),
        ("a: *nowhere\n", "f.yml:1:4",
         "the alias *nowhere names no anchor &nowhere defined before it"),
        ("? [a]\n: 1\n", "f.yml:1:3", "a mapping key must be a scalar"),
        ("a: {<<: 1}\n", "f.yml:1:9", "a merge key (<<) takes a mapping or a list of mappings"),
        ("a: {<<: [{p: 1}, 2]}\n", "f.yml:1:18",
         "a merge key (<<) takes a mapping or a list of mappings"),
        ("a: !!python/object/apply:os.system [id]\n", "f.yml:1:4",
         "the tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed"),
        ("a: !!python/name:os.system x\n", "f.yml:1:4",
         "could not determine a constructor for the tag 'tag:yaml.org,2002:python/name:os.system'"),
        ("a: !!set {x, y}\n", "f.yml:1:4", "the tag 'tag:yaml.org,2002:set' is not allowed"),
        ("a: !env {name: HOME}\n", "f.yml:1:4", "the tag '!env' is not allowed"),
        ("a: &x [*x]\n", "f.yml:1:1", TOO_DEEP),
        ("a: " + "[" * 2000 + "]" * 2000 + "\n", "f.yml:1:1", TOO_DEEP),
    ],
)  # fmt: skip
def test_yaml_problems_are_located(text: str, location: str, message: str) -> None:
    assert _error(text) == (location, message)


@pytest.mark.parametrize(
    ("text", "data", "found"),
    [
        (
            "a: 1\nb: 2\na: 3\n",
            {"a": 1, "b": 2},
            ["f.yml:3:1: duplicate key 'a' (first at line 1)"],
        ),
        (
            "set:\n  Status: Won\nset:\n  Status: Lost\n",
            {"set": {"Status": "Won"}},
            ["f.yml:3:1: duplicate key 'set' (first at line 1)"],
        ),
        ("x:\n  1: a\n  1: b\n", {"x": {1: "a"}}, ["f.yml:3:3: duplicate key 1 (first at line 2)"]),
        (
            "a: &x {p: 1}\nb: {<<: *x, p: 2, p: 3}\n",
            {"a": {"p": 1}, "b": {"p": 2}},
            ["f.yml:2:19: duplicate key 'p' (first at line 2)"],
        ),
        (
            "a: 1\na: 2\nb: {c: 1, c: 2}\n",
            {"a": 1, "b": {"c": 1}},
            [
                "f.yml:2:1: duplicate key 'a' (first at line 1)",
                "f.yml:3:11: duplicate key 'c' (first at line 3)",
            ],
        ),
        (
            "a: -.inf\nb: [1.0e+400, 2]\n",
            {"a": float("-inf"), "b": [float("inf"), 2]},
            [
                "f.yml:1:4: -.inf is not a finite number",
                "f.yml:2:5: 1.0e+400 is not a finite number",
            ],
        ),
    ],
)
def test_problems_that_leave_the_rest_checkable_are_all_listed(
    text: str, data: object, found: list[str]
) -> None:
    doc = loads(text, "f.yml")
    assert doc.data == data
    assert [f"{e.location}: {e.message}" for e in doc.problems] == found


def test_aliases_cannot_multiply_a_small_file_into_millions_of_values() -> None:
    lines, name = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"], "a0"
    for i in range(1, 9):  # 10**9 values if expanded
        lines.append(f"a{i}: &a{i} [{', '.join([f'*{name}'] * 10)}]")
        name = f"a{i}"
    text = "\n".join(lines) + "\n"
    assert len(text) < 600
    assert _error(text) == (
        "f.yml:1:16",
        f"aliases repeat more than {MAX_EXPANSION:,} values (an alias of aliases?)",
    )


def test_aliases_may_repeat_up_to_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlsource, "MAX_EXPANSION", 30)
    # Each *a repeats 4 values (the list and its three items): 7 * 4 = 28, 8 * 4 = 32.
    seven = "a: &a [x, y, z]\nb: [*a, *a, *a, *a, *a, *a, *a]\n"
    assert loads(seven, "f.yml").data["b"] == [["x", "y", "z"]] * 7
    eight = "a: &a [x, y, z]\nb: [*a, *a, *a, *a, *a, *a, *a, *a]\n"
    assert _error(eight) == (
        "f.yml:1:11",  # the value repeated once too often: the 31st
        "aliases repeat more than 30 values (an alias of aliases?)",
    )


def test_a_file_without_aliases_has_no_size_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlsource, "MAX_EXPANSION", 30)
    text = "ids: [" + ", ".join(f"id-{i}" for i in range(100)) + "]\n"
    assert len(loads(text, "f.yml").data["ids"]) == 100


def test_load_reads_utf8_with_or_without_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "r.yml"
    path.write_bytes("\ufeffname: José\n".encode())
    doc = load(path, "rules/r.yml")
    assert (doc.data, doc.where(("name",))) == ({"name": "José"}, Location("rules/r.yml", 1, 7))
    path.write_bytes("name: José\n".encode())
    doc = load(path)
    assert (doc.data, doc.file) == ({"name": "José"}, str(path))
    path.write_bytes(b"name: Jos\xe9\n")
    with pytest.raises(YamlError):
        load(path)


def test_a_file_that_is_not_utf8_is_a_located_problem(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yml"
    path.write_bytes(b"version: 1\nname: caf\xe9\n")
    with pytest.raises(YamlError) as caught:
        load(path, "rules/latin1.yml")
    assert (str(caught.value.location), caught.value.message) == (
        "rules/latin1.yml:2:10",
        "not UTF-8 text (save the file as UTF-8)",
    )


def test_a_control_character_is_a_located_problem() -> None:
    with pytest.raises(YamlError) as caught:
        loads("version: 1\nrules: []\n\x07\n", "rules/bell.yml")
    assert (str(caught.value.location), caught.value.message) == (
        "rules/bell.yml:3:1",
        "character U+0007 is not allowed in YAML (special characters are not allowed)",
    )


def test_a_file_over_the_size_cap_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "big.yml"
    path.write_text("a: " + "x" * yamlsource.MAX_BYTES + "\n")  # parsing it would take seconds
    started = time.process_time()
    with pytest.raises(YamlError) as caught:
        load(path, "rules/big.yml")
    assert (str(caught.value.location), caught.value.message) == (
        "rules/big.yml:1:1",
        "larger than 2 MiB: not a rule or settings file",
    )
    assert time.process_time() - started < 0.5
