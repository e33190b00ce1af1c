"""Runs one job of the GitHub Actions workflow ``lsqsync init`` writes, on this machine.

It does what the Actions runner does for the parts of the syntax the workflow uses, and raises
on anything else (an unknown expression function or context, an action it does not know, a key
it does not understand), so a test cannot pass on something the runner silently ignored:

- the job's ``if:`` and each step's ``if:``, with GitHub's expression rules: loose equality,
  truthiness, and the implicit ``success()`` of an ``if:`` without a status function;
- ``env:`` at workflow, job and step level, merged in that order, and ``with:``, with
  ``${{ }}`` evaluated in them;
- ``run:`` steps under ``bash --noprofile --norc -eo pipefail`` (``shell: bash``) in a fresh clone
  of the repository at the event's commit, with GitHub's default variables, ``$GITHUB_OUTPUT`` read
  back into ``steps.<id>.outputs`` and one ``$GITHUB_STEP_SUMMARY`` per job;
- ``actions/checkout``, ``actions/setup-python`` (no-ops: the clone is made before the job and
  lsqsync is installed in this interpreter's environment) and ``actions/upload-artifact`` (into
  the fake GitHub's artifact store).

``gh`` is the fake one of ``fake_gh.py``: it is first on the steps' PATH.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from fake_gh import FakeGitHub

import lsqsync
from lsqsync import scaffold

WORKFLOW = ".github/workflows/lsqsync.yml"
VENV_BIN = Path(sys.executable).parent
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
SERVER_URL = "https://github.com"
STEP_TIMEOUT = 120  # seconds; a step that hangs fails the test instead of the whole suite

JOB_KEYS = {"if", "needs", "runs-on", "permissions", "concurrency", "env", "steps", "environment"}
STEP_KEYS = {"id", "name", "if", "run", "uses", "with", "env"}


class WorkflowError(Exception):
    """The workflow uses something this runner does not implement."""


# -- expressions ------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>-?\d+(?:\.\d+)?(?![\w-]))
    | (?P<str>'(?:[^']|'')*')
    | (?P<op>==|!=|&&|\|\||!|\(|\)|\.|,)
    | (?P<name>[A-Za-z_][A-Za-z0-9_-]*)
    )""",
    re.VERBOSE,
)
STATUS_FUNCTIONS = ("success", "failure", "always", "cancelled")
CONTEXTS = ("github", "env", "vars", "secrets", "steps", "needs")  # which are available where:
# the caller's choice (a job's if: has no env or steps)
Node = tuple[Any, ...]


class Strict(dict[str, Any]):
    """A context object whose missing keys are errors (GitHub would give null)."""


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text.rstrip()):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise WorkflowError(f"cannot parse expression {text!r} at {text[pos:]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m[kind]))
        pos = m.end()
    return out


class _Parser:
    """or := and ('||' and)*; and := cmp ('&&' cmp)*; cmp := unary (('=='|'!=') unary)?;
    unary := '!' unary | primary; primary := literal | '(' or ')' | name '(' ')' | name ('.' name)*
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0

    def parse(self) -> Node:
        node = self.or_()
        if self.pos != len(self.tokens):
            raise WorkflowError(f"unexpected {self.tokens[self.pos][1]!r} in {self.text!r}")
        return node

    def peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise WorkflowError(f"unexpected end of {self.text!r}")
        token = self.tokens[self.pos]
        if expected is not None and token[1] != expected:
            raise WorkflowError(f"expected {expected!r}, got {token[1]!r} in {self.text!r}")
        self.pos += 1
        return token

    def or_(self) -> Node:
        node = self.and_()
        while self.peek() == "||":
            self.take()
            node = ("or", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.cmp()
        while self.peek() == "&&":
            self.take()
            node = ("and", node, self.cmp())
        return node

    def cmp(self) -> Node:
        node = self.unary()
        if self.peek() in ("==", "!="):
            op = self.take()[1]
            node = ("eq" if op == "==" else "ne", node, self.unary())
        return node

    def unary(self) -> Node:
        if self.peek() == "!":
            self.take()
            return ("not", self.unary())
        return self.primary()

    def primary(self) -> Node:
        kind, value = self.take()
        if value == "(":
            node = self.or_()
            self.take(")")
            return node
        if kind == "num":
            return ("lit", float(value) if "." in value else int(value))
        if kind == "str":
            return ("lit", value[1:-1].replace("''", "'"))
        if kind != "name":
            raise WorkflowError(f"unexpected {value!r} in {self.text!r}")
        if value in ("true", "false", "null"):
            return ("lit", {"true": True, "false": False, "null": None}[value])
        if self.peek() == "(":
            if value not in STATUS_FUNCTIONS:
                raise WorkflowError(f"unknown function {value}() in {self.text!r}")
            self.take()
            self.take(")")  # the status functions take no arguments
            return ("call", value)
        if value not in CONTEXTS:
            raise WorkflowError(f"unknown or unavailable context {value!r} in {self.text!r}")
        path = [value]
        while self.peek() == ".":
            self.take()
            kind, name = self.take()
            if kind != "name":
                raise WorkflowError(f"expected a property name after '.' in {self.text!r}")
            path.append(name)
        return ("ctx", *path)


def parse(text: str) -> Node:
    return _Parser(text).parse()


def _calls(node: Node) -> set[str]:
    if node[0] == "call":
        return {node[1]}
    return {c for child in node[1:] if isinstance(child, tuple) for c in _calls(child)}


def _number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool | int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return 0.0
        return float(text) if re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", text) else math.nan
    return math.nan


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object"


def loose_equal(a: Any, b: Any) -> bool:
    """GitHub's ``==``: different types compare as numbers, strings ignore case."""
    if _kind(a) != _kind(b):
        return _number(a) == _number(b)
    if isinstance(a, str):
        return a.casefold() == str(b).casefold()
    if _kind(a) == "object":
        return a is b
    return bool(a == b)


def truthy(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0 and not math.isnan(value)
    if isinstance(value, str):
        return value != ""
    return True


def as_string(value: Any) -> str:
    """An expression's value where a string is needed (``env:``, ``with:``)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float | str):
        return str(value)
    raise WorkflowError(f"an object where a string is needed: {value!r}")


@dataclass(frozen=True)
class Status:
    """What the status functions see: whether something before failed."""

    failed: bool

    def call(self, name: str) -> bool:
        if name == "always":
            return True
        if name == "cancelled":
            return False  # nothing is ever cancelled here
        if name == "success":
            return not self.failed
        if name == "failure":
            return self.failed
        raise WorkflowError(f"unknown function {name}()")


def evaluate(node: Node, contexts: Mapping[str, Any], status: Status | None = None) -> Any:
    op = node[0]
    if op == "lit":
        return node[1]
    if op == "call":
        if node[1] in STATUS_FUNCTIONS and status is None:
            raise WorkflowError(f"{node[1]}() is only available in if:")
        if status is None:
            raise WorkflowError(f"unknown function {node[1]}()")
        return status.call(node[1])
    if op == "ctx":
        name, *path = node[1:]
        if name not in contexts:
            raise WorkflowError(f"unknown or unavailable context {name!r}")
        value = contexts[name]
        for i, key in enumerate(path):
            if isinstance(value, Strict):
                if key not in value:
                    where = ".".join(node[1 : i + 2])
                    raise WorkflowError(f"{where}.{key}: no such property")
                value = value[key]
            elif isinstance(value, dict):
                value = value.get(key)
            else:
                value = None  # a property of null or of a string is null
        return value
    if op == "not":
        return not truthy(evaluate(node[1], contexts, status))
    if op in ("and", "or"):
        left = evaluate(node[1], contexts, status)
        if truthy(left) == (op == "or"):
            return left
        return evaluate(node[2], contexts, status)
    if op in ("eq", "ne"):
        equal = loose_equal(
            evaluate(node[1], contexts, status), evaluate(node[2], contexts, status)
        )
        return equal if op == "eq" else not equal
    raise WorkflowError(f"unknown node {node!r}")


def condition(text: Any, contexts: Mapping[str, Any], status: Status) -> bool:
    """An ``if:``: without a status function, GitHub evaluates ``success() && (if)``."""
    if text is None:
        text = "success()"
    if isinstance(text, bool):
        text = "true" if text else "false"
    text = str(text).strip()
    if text.startswith("${{") and text.endswith("}}"):
        text = text[3:-2]
    node = parse(text)
    if not _calls(node) & set(STATUS_FUNCTIONS):
        node = ("and", ("call", "success"), node)
    return truthy(evaluate(node, contexts, status))


_INTERPOLATION = re.compile(r"\$\{\{(.*?)\}\}")


def interpolate(value: Any, contexts: Mapping[str, Any]) -> str:
    return _INTERPOLATION.sub(
        lambda m: as_string(evaluate(parse(m[1]), contexts)), as_string(value)
    )


# -- jobs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    name: str  # pull_request | push | schedule | workflow_dispatch
    payload: dict[str, Any]
    sha: str  # GITHUB_SHA: the commit the job checks out
    run_id: int

    @property
    def ref(self) -> str:
        """GITHUB_REF: the pushed branch, or the pull request's merge ref."""
        if self.name == "pull_request":
            return f"refs/pull/{self.payload['number']}/merge"
        if self.name == "schedule":  # scheduled runs run on the default branch
            return "refs/heads/main"
        ref: str = self.payload["ref"]
        return ref

    @property
    def ref_name(self) -> str:
        return self.ref.removeprefix("refs/heads/").removeprefix("refs/pull/")


@dataclass
class StepResult:
    id: str | None
    name: str
    outcome: str  # success | failure | skipped
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def errors(self) -> list[str]:
        """The messages of the ``::error::`` commands the step printed (annotations)."""
        lines = self.stdout.splitlines() + self.stderr.splitlines()
        return [line.split("::", 2)[2] for line in lines if re.match(r"::error( [^:]*)?::", line)]


@dataclass
class JobResult:
    name: str
    result: str  # success | failure | skipped
    steps: list[StepResult]
    summary: str  # what the steps appended to $GITHUB_STEP_SUMMARY
    workspace: Path | None

    def step(self, name: str) -> StepResult:
        found = [s for s in self.steps if name in (s.name, s.id)]
        if len(found) != 1:
            raise KeyError(f"{len(found)} steps named {name!r} in job {self.name}")
        return found[0]

    def outcomes(self) -> dict[str, str]:
        return {s.name: s.outcome for s in self.steps}

    def __str__(self) -> str:
        """Every step's outcome and output, for assertion messages."""
        parts = [f"job {self.name}: {self.result}"]
        for s in self.steps:
            parts.append(f"--- {s.name}: {s.outcome} (exit {s.exit_code}, {s.seconds:.2f} s)")
            lines = s.stdout.splitlines() + s.stderr.splitlines()
            parts += [f"    {line}" for line in lines[-30:]]
        return "\n".join(parts)


def _step_name(step: Mapping[str, Any]) -> str:
    if "name" in step:
        return str(step["name"])
    if "uses" in step:
        return str(step["uses"])
    return "Run " + str(step["run"]).splitlines()[0]


class Runner:
    """Runs the workflow's jobs for one repository against a fake GitHub."""

    def __init__(
        self,
        *,
        origin: Path,
        github: FakeGitHub,
        work: Path,
        secrets: Mapping[str, str],
        variables: Mapping[str, str],
        workflow: str | None = None,
        path: str = WORKFLOW,
    ) -> None:
        self.origin = origin
        self.github = github
        self.work = work
        self.secrets = dict(secrets)
        self.variables = dict(variables)
        self.path = path  # the workflow file, in the repository
        self.text = workflow or scaffold.files()[path]
        self.doc = yaml.safe_load(self.text)
        self.bin = work / "bin"
        github.wrapper(self.bin)
        if self.doc.get("defaults") != {"run": {"shell": "bash"}}:
            raise WorkflowError(f"defaults: {self.doc.get('defaults')!r}: only shell: bash is run")

    def run(self, job_name: str, event: Event, needs: Mapping[str, str] | None = None) -> JobResult:
        """Run the job ``job_name`` for ``event``; ``needs`` gives the result of each job it
        needs (success | failure | skipped)."""
        job = self.doc["jobs"][job_name]
        if unknown := set(job) - JOB_KEYS:
            raise WorkflowError(f"jobs.{job_name}: unsupported keys {sorted(unknown)}")
        needed = job.get("needs", [])
        needed = [needed] if isinstance(needed, str) else needed
        needs = dict(needs or {})
        if set(needed) != set(needs):
            raise WorkflowError(f"jobs.{job_name} needs {needed}; results given for {list(needs)}")
        github = Strict(
            event_name=event.name,
            event=event.payload,
            repository=self.github.repository,
            sha=event.sha,
            ref=event.ref,
            ref_name=event.ref_name,
            token=self.github.token,
            run_id=str(event.run_id),
            server_url=SERVER_URL,
        )
        job_contexts: dict[str, Any] = {
            "github": github,
            "vars": self.variables,
            "needs": Strict({n: {"result": r} for n, r in needs.items()}),
        }
        status = Status(failed=any(r != "success" for r in needs.values()))
        if not condition(job.get("if"), job_contexts, status):
            return JobResult(job_name, "skipped", [], "", None)
        if "concurrency" in job:  # not simulated, but its expression must evaluate
            interpolate(job["concurrency"]["group"], job_contexts)

        # what the fake gh lets the job's token do (git access to origin is not checked)
        self.github.set_permissions(job.get("permissions", self.doc.get("permissions", {})))
        root = self.work / f"run-{event.run_id}-{job_name}"
        workspace, temp, home = root / "workspace", root / "temp", root / "home"
        for d in (temp, home):
            d.mkdir(parents=True)
        git = ["git", "-c", "advice.detachedHead=false"]
        git_env = {"PATH": SYSTEM_PATH, "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1"}
        clone = [*git, "clone", "--quiet", str(self.origin), str(workspace)]
        subprocess.run(clone, env=git_env, check=True)
        checkout = [*git, "checkout", "--quiet", event.sha]
        subprocess.run(checkout, cwd=workspace, env=git_env, check=True)
        if (workspace / self.path).read_text("utf-8") != self.text:
            raise WorkflowError(f"{self.path} at {event.sha} is not the workflow being run")
        summary = root / "step_summary.md"
        summary.touch()
        event_file = root / "event.json"
        event_file.write_text(json.dumps(event.payload), "utf-8")

        secrets = dict(self.secrets, GITHUB_TOKEN=self.github.token)
        env: dict[str, str] = {}
        base = {
            "github": github,
            "vars": self.variables,
            "secrets": secrets,
            "needs": job_contexts["needs"],
        }
        for level in (self.doc.get("env", {}), job.get("env", {})):
            scope = {**base, "env": Strict(env)}
            env = {**env, **{k: interpolate(v, scope) for k, v in level.items()}}
        steps: Strict = Strict()
        for step in job["steps"]:
            if "id" in step:
                steps[step["id"]] = None  # known, not run yet
        default = {
            "PATH": f"{self.bin}:{VENV_BIN}:{SYSTEM_PATH}",
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_REPOSITORY": self.github.repository,
            "GITHUB_SHA": event.sha,
            "GITHUB_REF": event.ref,
            "GITHUB_REF_NAME": event.ref_name,
            "GITHUB_RUN_ID": str(event.run_id),
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_SERVER_URL": SERVER_URL,
            "GITHUB_EVENT_NAME": event.name,
            "GITHUB_EVENT_PATH": str(event_file),
            "GITHUB_WORKSPACE": str(workspace),
            "GITHUB_STEP_SUMMARY": str(summary),
            "RUNNER_TEMP": str(temp),
        }

        results: list[StepResult] = []
        for index, step in enumerate(job["steps"]):
            if unknown := set(step) - STEP_KEYS:
                raise WorkflowError(f"step {_step_name(step)}: unsupported keys {sorted(unknown)}")
            contexts = {**base, "env": Strict(env), "steps": steps}
            failed = any(r.outcome == "failure" for r in results)
            if not condition(step.get("if"), contexts, Status(failed)):
                result = StepResult(step.get("id"), _step_name(step), "skipped")
            else:
                step_env = dict(env)
                for k, v in step.get("env", {}).items():
                    step_env[k] = interpolate(v, {**contexts, "env": Strict(step_env)})
                contexts["env"] = Strict(step_env)
                with_ = {k: interpolate(v, contexts) for k, v in step.get("with", {}).items()}
                if "uses" in step:
                    result = self._action(step, with_, workspace, event)
                else:
                    output = temp / f"output-{index}"
                    output.touch()
                    step_env = {**default, **step_env, "GITHUB_OUTPUT": str(output)}
                    result = self._script(step, index, step_env, workspace)
                    result.outputs = _outputs(output)
            results.append(result)
            if result.id is not None:
                steps[result.id] = {
                    "outcome": result.outcome,
                    "conclusion": result.outcome,
                    "outputs": result.outputs,
                }
        outcome = "failure" if any(r.outcome == "failure" for r in results) else "success"
        return JobResult(job_name, outcome, results, summary.read_text("utf-8"), workspace)

    def _script(
        self, step: Mapping[str, Any], index: int, env: dict[str, str], cwd: Path
    ) -> StepResult:
        script = str(step["run"])
        if "${{" in script:  # the workflow passes values through env: (no script injection)
            raise WorkflowError(f"step {_step_name(step)}: ${{{{ }}}} in run:")
        if step.get("name") == "Install lsqsync":
            # Not run: lsqsync is not on PyPI here and this environment already has it. What it
            # would install is checked instead: the version `lsqsync init` wrote, from PyPI.
            if not re.fullmatch(
                r'python -m pip install [^"]*"lsqsync(\[postgres\])?==\$LSQSYNC_VERSION"',
                script.strip(),
            ):
                raise WorkflowError(
                    f"Install lsqsync runs {script!r}, not pip install of a version"
                )
            if env["LSQSYNC_VERSION"] != lsqsync.__version__:
                raise WorkflowError(
                    f"LSQSYNC_VERSION {env['LSQSYNC_VERSION']} != {lsqsync.__version__}"
                )
            return StepResult(step.get("id"), "Install lsqsync", "success", 0)
        path = Path(env["RUNNER_TEMP"]) / f"step-{index}.sh"
        path.write_text(script, "utf-8")
        bash = shutil.which("bash", path=SYSTEM_PATH)
        assert bash is not None
        started = time.monotonic()
        proc = subprocess.run(
            [bash, "--noprofile", "--norc", "-eo", "pipefail", str(path)],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT,
            check=False,
        )
        return StepResult(
            step.get("id"),
            _step_name(step),
            "success" if proc.returncode == 0 else "failure",
            proc.returncode,
            proc.stdout,
            proc.stderr,
            seconds=time.monotonic() - started,
        )

    def _action(
        self, step: Mapping[str, Any], with_: dict[str, str], workspace: Path, event: Event
    ) -> StepResult:
        action, _, _version = str(step["uses"]).partition("@")
        name = _step_name(step)
        if action in ("actions/checkout", "actions/setup-python"):
            # the job's workspace is a clone at the event's commit; this Python runs the steps
            return StepResult(step.get("id"), name, "success")
        if action == "actions/upload-artifact":
            if unknown := set(with_) - {"name", "path", "if-no-files-found", "retention-days"}:
                raise WorkflowError(f"{action}: unsupported inputs {sorted(unknown)}")
            files = [workspace / p for p in with_["path"].splitlines() if p.strip()]
            files = [f for f in files if f.is_file()]
            if not files:
                missing = with_.get("if-no-files-found", "warn")
                message = f"No files were found with the provided path: {with_['path']}"
                if missing == "error":
                    return StepResult(step.get("id"), name, "failure", None, "", message)
                return StepResult(step.get("id"), name, "success", None, "", message)
            self.github.upload_artifact(event.run_id, with_["name"], files)
            return StepResult(step.get("id"), name, "success")
        raise WorkflowError(f"unsupported action {step['uses']}")


def _outputs(path: Path) -> dict[str, str]:
    outputs = {}
    for line in path.read_text("utf-8").splitlines():
        name, sep, value = line.partition("=")
        if not sep or "<<" in name:
            raise WorkflowError(f"$GITHUB_OUTPUT line not supported here: {line!r}")
        outputs[name] = value
    return outputs
