from __future__ import annotations

from collections.abc import Generator

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    """On a failure, show every workflow job the test ran: each step's outcome and output."""
    outcome = yield
    report = outcome.get_result()
    project = getattr(item, "funcargs", {}).get("project")
    if report.failed and call.when == "call" and project is not None:
        report.sections.append(
            ("workflow jobs", "\n\n".join(str(job) for job in project.jobs) or "(none)")
        )
