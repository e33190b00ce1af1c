"""The LeadSquared client: session, auth, retries, the rate limiter and the endpoint calls."""

from lsqsync.lsq import trace
from lsqsync.lsq.accounts import SharedLedger, account_limiter, cache_dir
from lsqsync.lsq.client import (
    MAX_BULK_ITEMS,
    MAX_IDS_PER_CALL,
    MAX_PAGE_SIZE,
    LsqClient,
    PartialRead,
    SearchRefused,
)
from lsqsync.lsq.models import (
    KINDS,
    BulkUpdateItem,
    FieldMeta,
    FieldSettings,
    Kind,
    OpportunityDetails,
    OpportunityRecord,
    OpportunityType,
    Outcome,
    RowResult,
    User,
    WhoAmI,
)
from lsqsync.lsq.ratelimit import DOCUMENTED as DOCUMENTED_LIMIT
from lsqsync.lsq.ratelimit import Budget, Limit, RateLimiter, slowest
from lsqsync.lsq.transport import normalise_host

__all__ = [
    "DOCUMENTED_LIMIT",
    "KINDS",
    "MAX_BULK_ITEMS",
    "MAX_IDS_PER_CALL",
    "MAX_PAGE_SIZE",
    "Budget",
    "BulkUpdateItem",
    "FieldMeta",
    "FieldSettings",
    "Kind",
    "Limit",
    "LsqClient",
    "OpportunityDetails",
    "OpportunityRecord",
    "OpportunityType",
    "Outcome",
    "PartialRead",
    "RateLimiter",
    "RowResult",
    "SearchRefused",
    "SharedLedger",
    "User",
    "WhoAmI",
    "account_limiter",
    "cache_dir",
    "normalise_host",
    "slowest",
    "trace",
]
