"""The emulator profiles: how real LeadSquared accounts were seen (or may be expected) to differ
from the emulator's defaults. The end-to-end scenarios of ``e2e/test_e2e_profiles.py`` run
against every one of them, so a change that only works against the default emulator fails.

One list, in one place: a new way accounts differ is one more ``Profile`` in ``PROFILES``, made
of emulator settings (``Settings`` fields; runtime-switchable) and, for what must be chosen when
the emulator starts, ``Emulator`` keyword arguments — plus what the scenarios must then expect.
Keep each cheap: the data set is small (``OPPORTUNITIES``) and a profile's page cap must be
smaller than a type (21 opportunities) for paging to happen at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lsqsync.emulator import Settings

OPPORTUNITIES = 40  # the Bulk Update page's two, and 40 generated: 21 of each type
SEED = 1


@dataclass(frozen=True)
class Profile:
    name: str
    settings: Mapping[str, Any] = field(default_factory=dict)  # Settings fields
    emulator: Mapping[str, Any] = field(default_factory=dict)  # Emulator(...) keyword arguments
    # Text of the error (exit 1) a plan whose rules need Advanced Search (a rule over a whole
    # type) must stop with; None: such a plan must succeed.
    search_error: str | None = None
    # Text of a warning a plan of rules that only name ids must record; None: no warning.
    ids_warning: str | None = None
    # How long after a write reads may still show the value before it (seconds).
    read_lag: float = 0.0
    # Lines added to the project's lsqsync.yml (what a user of such an account must say).
    config: str = ""

    def make_settings(self) -> Settings:
        """The emulator's settings under this profile (tests run without a rate limit)."""
        return Settings(**{"rate_limit_calls": None, **self.settings})


PROFILES: tuple[Profile, ...] = (
    Profile("default"),
    # a PageSize above the cap is clamped silently: pages are shorter than asked
    Profile("page-cap", {"page_cap": 4}),
    # every page is shorter than asked, RecordCount is right
    Profile("short-pages", {"page_cap": 9, "short_pages": True}),
    # a broken server: every PageIndex answers page 1
    Profile(
        "ignore-page-index",
        {"page_cap": 4, "ignore_page_index": True},
        search_error="refusing to plan on a partial read",
    ),
    # searches and by-id reads show a write only a second after it
    Profile("read-lag", {"read_lag_ms": 1000.0}, read_lag=1.0),
    # the keys' user is no administrator: Advanced Search is refused
    Profile(
        "non-admin",
        {"non_admin": True},
        search_error="these keys cannot use Opportunity Advanced Search (administrators only)",
        ids_warning="safety.max_change_ratio not checked for type 12003",
    ),
    # Date fields kept as the instant of local midnight in the account's zone, which the
    # project's `timezone:` names
    Profile("date-zone", {"date_zone": "Asia/Kolkata"}, config="timezone: Asia/Kolkata\n"),
)
