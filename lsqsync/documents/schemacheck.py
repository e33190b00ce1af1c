"""JSON Schema validation of a loaded YAML document, every error at once, each at its place."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from lsqsync import resources
from lsqsync.documents.problems import Problem, format_path
from lsqsync.documents.yamlsource import Document, PathKey


@cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = resources.schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _leaves(error: ValidationError) -> Iterable[ValidationError]:
    """For oneOf/anyOf, the branch that best explains the failure (``best_match``)."""
    if error.context:
        yield from _leaves(best_match(error.context))
    else:
        yield error


def check(document: Document, schema: str) -> list[Problem]:
    problems = []
    for error in _validator(schema).iter_errors(document.data):
        for leaf in _leaves(error):
            problems.extend(_problems(document, leaf))
    return problems


def _problems(document: Document, error: ValidationError) -> list[Problem]:
    path: PathKey = tuple(error.absolute_path)
    schema: Any = error.schema if isinstance(error.schema, dict) else {}
    custom = schema.get("errorMessage")
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = list(schema.get("properties", {}))
        unexpected = [k for k in error.instance if k not in known]
        out = []
        for key in unexpected:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (expected: {', '.join(known)})"
            out.append(
                Problem(
                    document.where((*path, str(key), "<key>")),
                    format_path((*path, str(key))),
                    f"unknown key{hint}",
                )
            )
        return out
    message = custom if isinstance(custom, str) else describe(error)
    if "propertyNames" in error.schema_path:  # the instance is a key of the mapping at path
        key = str(error.instance)
        return [Problem(document.where((*path, key, "<key>")), format_path((*path, key)), message)]
    return [Problem(document.where(path), format_path(path), message)]


def describe(error: ValidationError, show: Callable[[Any], str] = repr) -> str:
    """A schema error in plain words. ``show`` writes the offending value as the file's own
    language would (YAML documents: Python's repr, which reads like YAML; JSON: JSON)."""
    instance = show(error.instance)
    if error.validator == "required":
        return error.message.replace("is a required property", "is required")
    if error.validator == "const":
        return f"must be {error.validator_value!r}, not {instance}"
    if error.validator == "type":
        expected = error.validator_value
        names = " or ".join(expected) if isinstance(expected, list) else str(expected)
        article = "an" if names[0] in "aeiou" else "a"
        return f"must be {article} {names}, not {instance}"
    if error.validator == "pattern":
        return f"{instance} does not match {error.validator_value!r}"
    return error.message if len(error.message) <= 200 else error.message[:199] + "…"
