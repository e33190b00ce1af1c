"""A fake GitHub behind a fake ``gh`` CLI, for running the generated workflow's steps locally.

Its state is one JSON file: pull requests, their comments, which commit came from which pull
request, issues, and the artifacts of each workflow run. Tests drive it through ``FakeGitHub``; the
workflow's steps reach it through a ``gh`` wrapper script that runs this file. It answers exactly
the ``gh`` commands the workflow uses and refuses anything else, so a step cannot pass by calling
something the fake does not understand."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

# the PyPI binding of jq, for the filters gh evaluates with gojq
import jq  # type: ignore[import-not-found]

BOT = "github-actions[bot]"


class FakeGitHub:
    """The fake's state, as the tests see it."""

    def __init__(self, root: Path, repository: str, token: str) -> None:
        self.root = root
        self.path = root / "github.json"
        self.repository = repository
        self.token = token
        root.mkdir(parents=True, exist_ok=True)
        self.save(
            {
                "repository": repository,
                "token": token,
                "pulls": {},  # number → head sha
                "commits": {},  # sha → numbers of the pull requests it belongs to
                "merged": [],  # numbers of the merged pull requests
                "comments": {},  # issue number → [{id, user: {login}, body}]
                "next_comment_id": 1001,
                "artifacts": {},  # run id → artifact name → folder
                "private": True,  # the repository's visibility
                "issues": {},  # number → {number, title, body, state, state_reason, user}
                "next_issue": 1,
                "refuse_comment_writes": False,
                "permissions": {},  # the running job's GITHUB_TOKEN scopes
                "calls": [],  # every gh command line, in order
            }
        )

    def load(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.path.read_text("utf-8"))
        return data

    def save(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1), "utf-8")
        tmp.replace(self.path)

    def set_pull(self, number: int, head_sha: str) -> None:
        data = self.load()
        data["pulls"][str(number)] = head_sha
        self.save(data)

    def set_commit_pulls(self, sha: str, numbers: list[int], *, merged: bool = True) -> None:
        """``sha`` belongs to these pull requests: their merge (``merged``), or a commit of
        theirs (GitHub lists open pull requests whose head is the commit too)."""
        data = self.load()
        data["commits"][sha] = numbers
        if merged:
            data["merged"] = sorted(set(data["merged"]) | set(numbers))
        self.save(data)

    def refuse_comment_writes(self, refuse: bool = True) -> None:
        """Answer comment writes with HTTP 403, like a token without pull-requests: write."""
        data = self.load()
        data["refuse_comment_writes"] = refuse
        self.save(data)

    def set_permissions(self, permissions: dict[str, str]) -> None:
        """The scopes of the running job's token (its ``permissions:``)."""
        data = self.load()
        data["permissions"] = permissions
        self.save(data)

    def set_private(self, private: bool) -> None:
        data = self.load()
        data["private"] = private
        self.save(data)

    def issues(self) -> list[dict[str, Any]]:
        """Every issue, open or closed, oldest first."""
        found: list[dict[str, Any]] = list(self.load()["issues"].values())
        return found

    def comments(self, number: int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.load()["comments"].get(str(number), [])
        return found

    def calls(self) -> list[list[str]]:
        found: list[list[str]] = self.load()["calls"]
        return found

    def artifact(self, run_id: int, name: str) -> Path | None:
        folder = self.load()["artifacts"].get(str(run_id), {}).get(name)
        return None if folder is None else Path(folder)

    def upload_artifact(self, run_id: int, name: str, files: list[Path]) -> Path:
        """What actions/upload-artifact stores: the files, under the run and the name."""
        folder = self.root / "artifacts" / str(run_id) / name
        if folder.exists():
            raise ValueError(f"run {run_id} already has an artifact named {name!r}")
        folder.mkdir(parents=True)
        for f in files:
            shutil.copy(f, folder / f.name)
        data = self.load()
        data["artifacts"].setdefault(str(run_id), {})[name] = str(folder)
        self.save(data)
        return folder

    def wrapper(self, bin_dir: Path) -> Path:
        """Write the ``gh`` executable the workflow's steps find first on their PATH."""
        bin_dir.mkdir(parents=True, exist_ok=True)
        gh = bin_dir / "gh"
        gh.write_text(
            "#!/bin/sh\n"
            f"FAKE_GH_STATE='{self.path}' exec '{sys.executable}' '{Path(__file__).resolve()}'"
            ' "$@"\n',
            "utf-8",
        )
        gh.chmod(0o755)
        return gh


# -- the gh command line ---------------------------------------------------------------------


class GhError(Exception):
    """Printed on stderr; gh exits with 1."""


class Unsupported(GhError):
    def __init__(self, what: str) -> None:
        super().__init__(f"fake gh: unsupported {what}")


def _api(data: dict[str, Any], args: list[str]) -> str:
    method, paginate, jq_expr, fields, endpoint = None, False, None, {}, None
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg in ("--method", "-X") and rest:
            method = rest.pop(0)
        elif arg == "--paginate":
            paginate = True
        elif arg in ("--jq", "-q") and rest:
            jq_expr = rest.pop(0)
        elif arg in ("-F", "--field") and rest:
            key, sep, value = rest.pop(0).partition("=")
            if not sep or key != "body" or not value.startswith("@"):
                raise Unsupported(f"field {key}{sep}{value}")
            fields[key] = Path(value[1:]).read_text("utf-8")
        elif arg in ("-f", "--raw-field") and rest:
            key, sep, value = rest.pop(0).partition("=")
            if not sep or key not in ("title", "state", "state_reason"):
                raise Unsupported(f"raw field {key}{sep}{value}")
            fields[key] = value
        elif not arg.startswith("-") and endpoint is None:
            endpoint = arg
        else:
            raise Unsupported(f"api argument {arg!r}")
    if endpoint is None:
        raise Unsupported("api call without an endpoint")
    method = method or ("POST" if fields else "GET")
    if method not in ("GET", "POST", "PATCH"):
        raise Unsupported(f"method {method}")
    if paginate and method != "GET":
        raise Unsupported("--paginate with " + method)
    response = _route(data, method, endpoint, fields)
    if jq_expr is None:
        return json.dumps(response) + "\n"
    # gh prints strings raw and every other result as JSON, one a line
    results = jq.compile(jq_expr).input_value(response).all()
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in results)


def _route(data: dict[str, Any], method: str, endpoint: str, fields: dict[str, str]) -> Any:
    repo = re.escape(data["repository"])
    endpoint, _, query = endpoint.partition("?")
    if method == "GET" and endpoint == f"repos/{data['repository']}" and not fields and not query:
        # repository metadata: readable by every token
        return {"full_name": data["repository"], "private": data["private"]}
    if endpoint == f"repos/{data['repository']}/issues" or re.fullmatch(
        rf"repos/{repo}/issues/\d+", endpoint
    ):
        return _issues(data, method, endpoint, query, fields)
    if query:
        raise Unsupported(f"query {query!r}")
    if m := re.fullmatch(rf"repos/{repo}/issues/(\d+)/comments", endpoint):
        comments = data["comments"].setdefault(m[1], [])
        if method == "GET" and not fields:
            _require(data, "pull-requests", "read")
            return comments
        if method == "POST" and set(fields) == {"body"}:
            _require(data, "pull-requests", "write")
            _check_writable(data)
            comment = {
                "id": data["next_comment_id"],
                "user": {"login": BOT},
                "body": fields["body"],
            }
            data["next_comment_id"] += 1
            comments.append(comment)
            return comment
    elif m := re.fullmatch(rf"repos/{repo}/issues/comments/(\d+)", endpoint):
        if method == "PATCH" and set(fields) == {"body"}:
            _require(data, "pull-requests", "write")
            _check_writable(data)
            for comment in (c for cs in data["comments"].values() for c in cs):
                if comment["id"] == int(m[1]):
                    comment["body"] = fields["body"]
                    return comment
            raise GhError("gh: Not Found (HTTP 404)")
    elif (m := re.fullmatch(rf"repos/{repo}/commits/([0-9a-f]{{40}})/pulls", endpoint)) and (
        method == "GET" and not fields
    ):
        _require(data, "pull-requests", "read")
        return [_pull(data, n) for n in data["commits"].get(m[1], [])]
    elif (m := re.fullmatch(rf"repos/{repo}/pulls/(\d+)", endpoint)) and (
        method == "GET" and not fields
    ):
        _require(data, "pull-requests", "read")
        if m[1] not in data["pulls"]:
            raise GhError("gh: Not Found (HTTP 404)")
        return _pull(data, int(m[1]))
    raise Unsupported(f"endpoint {method} {endpoint}")


def _issues(
    data: dict[str, Any], method: str, endpoint: str, query: str, fields: dict[str, str]
) -> Any:
    """The issues endpoints: list (pull requests are listed too, as GitHub does), create, edit."""
    issues: dict[str, dict[str, Any]] = data["issues"]
    number = endpoint.rpartition("/")[2]
    params = dict(p.partition("=")[::2] for p in query.split("&") if p)
    if method == "GET" and not number.isdigit() and not fields:
        if set(params) - {"state", "per_page"} or params.get("state", "open") not in (
            "open",
            "closed",
            "all",
        ):
            raise Unsupported(f"query {query!r}")
        _require(data, "issues", "read")
        state = params.get("state", "open")
        pulls = [
            {"number": int(n), "title": f"pull request #{n}", "body": None, "state": "open",
             "user": {"login": "someone"}, "pull_request": {"url": "…"}}
            for n in data["pulls"]
        ]  # fmt: skip
        listed = [i for i in [*issues.values(), *pulls] if state in ("all", i["state"])]
        return sorted(listed, key=lambda i: -int(i["number"]))  # newest first, as GitHub
    if query:
        raise Unsupported(f"query {query!r}")
    if method == "POST" and not number.isdigit() and set(fields) == {"title", "body"}:
        _require(data, "issues", "write")
        issue = {
            "number": data["next_issue"],
            "title": fields["title"],
            "body": fields["body"],
            "state": "open",
            "state_reason": None,
            "user": {"login": BOT},
        }
        issues[str(issue["number"])] = issue
        data["next_issue"] += 1
        return issue
    if method == "PATCH" and number.isdigit() and fields:
        _require(data, "issues", "write")
        if set(fields) - {"title", "body", "state", "state_reason"}:
            raise Unsupported(f"issue fields {sorted(fields)}")
        if number not in issues:
            raise GhError("gh: Not Found (HTTP 404)")
        if fields.get("state", "open") not in ("open", "closed"):
            raise GhError("gh: Validation Failed (HTTP 422)")
        issues[number].update(fields)
        return issues[number]
    raise Unsupported(f"endpoint {method} {endpoint}")


def _pull(data: dict[str, Any], number: int) -> dict[str, Any]:
    return {
        "number": number,
        "head": {"sha": data["pulls"][str(number)]},
        "base": {"ref": "main"},
        "merged_at": "2026-11-27T10:00:00Z" if number in data["merged"] else None,
    }


def _require(data: dict[str, Any], scope: str, level: str) -> None:
    """A token without the scope (``permissions:``) gets 403, as from GitHub."""
    granted = data["permissions"].get(scope, "none")
    if granted not in (("read", "write") if level == "read" else ("write",)):
        raise GhError(
            f"gh: Resource not accessible by integration (HTTP 403) [fake gh: the job's token"
            f" has {scope}: {granted}, {level} is needed]"
        )


def _check_writable(data: dict[str, Any]) -> None:
    if data["refuse_comment_writes"]:
        raise GhError("gh: Resource not accessible by integration (HTTP 403)")


def _run_download(data: dict[str, Any], args: list[str]) -> str:
    match args:
        case [run_id, "--name", name, "--dir", target] if run_id.isdigit():
            _require(data, "actions", "read")
            folder = data["artifacts"].get(run_id, {}).get(name)
            if folder is None:
                raise GhError("no valid artifacts found to download")
            Path(target).mkdir(parents=True, exist_ok=True)
            for f in Path(folder).iterdir():
                shutil.copy(f, Path(target) / f.name)
            return ""
    raise Unsupported(f"run download arguments {args}")


def main(argv: list[str]) -> int:
    state = Path(os.environ["FAKE_GH_STATE"])
    data = json.loads(state.read_text("utf-8"))
    data["calls"].append(argv)
    try:
        if not os.environ.get("GH_TOKEN"):
            raise GhError(
                "gh: To use GitHub CLI in a GitHub Actions workflow, set the GH_TOKEN environment"
                " variable."
            )
        if os.environ["GH_TOKEN"] != data["token"]:
            raise GhError("gh: Bad credentials (HTTP 401)")
        match argv:
            case ["api", *args]:
                out = _api(data, args)
            case ["run", "download", *args]:
                out = _run_download(data, args)
            case _:
                raise Unsupported(f"command {argv}")
    except GhError as e:
        print(e, file=sys.stderr)
        return 1
    finally:
        state.write_text(json.dumps(data, indent=1), "utf-8")
    sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
