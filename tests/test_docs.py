"""The documentation site builds in strict mode (a broken link or anchor fails it), and the
README's links lead into it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from markdown.extensions.toc import slugify

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """The ids MkDocs gives the page's headings (code blocks skipped)."""
    out, fenced = set(), False
    for line in page.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (found := re.match(r"#{1,6} (.*)", line)):
            out.add(slugify(found.group(1), "-"))
    return out


def test_the_site_builds_in_strict_mode(tmp_path: Path) -> None:
    config, site = str(ROOT / "mkdocs.yml"), str(tmp_path / "site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-f", config, "-d", site],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    # the generated CLI reference has every top-level command, taken from click itself
    cli = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    for command in ("init", "validate", "plan", "apply", "rollback", "drift", "reconcile"):
        assert f"lsqsync {command}" in cli


def test_every_readme_link_resolves() -> None:
    broken = []
    for target in LINK.findall(README.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        page = (ROOT / path) if path else README
        if not page.exists():
            broken.append(f"{target}: no such file")
        elif anchor and anchor not in anchors(page):
            broken.append(f"{target}: {page.relative_to(ROOT)} has no heading #{anchor}")
    assert not broken, "README.md links to what is not there:\n" + "\n".join(broken)


def test_the_readme_is_short_and_leads_into_the_site() -> None:
    text = README.read_text()
    assert len(text.splitlines()) < 250
    linked = {t.partition("#")[0] for t in LINK.findall(text)}
    pages = {f"docs/{p.relative_to(ROOT / 'docs')}" for p in (ROOT / "docs").rglob("*.md")}
    # every recipe and reference page is one click away
    wanted = {p for p in pages if p.startswith(("docs/recipes/", "docs/reference/"))}
    wanted -= {"docs/recipes/index.md"}
    assert wanted <= linked, sorted(wanted - linked)


def test_the_site_starts_with_the_readmes_set_up_and_tour() -> None:
    readme = README.read_text()
    tour = readme[readme.index("## Set-up") : readme.index("## Documentation")]
    index = (ROOT / "docs" / "index.md").read_text()
    on_site = index[index.index("## Set-up") :]
    repo = "https://github.com/lsqsync/lsqsync/blob/main/"
    assert on_site.replace(f"]({repo}", "](").strip() == tour.strip()
