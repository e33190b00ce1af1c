"""The LeadSquared client: session, auth, retries, the rate limiter and the endpoint calls."""

from lsqsync.lsq import trace
from lsqsync.lsq.accounts import account_limiter, accounts_file, cache_dir
from lsqsync.lsq.client import MAX_BULK_ITEMS, MAX_IDS_PER_CALL, MAX_PAGE_SIZE, LsqClient
from lsqsync.lsq.models import (
    BulkUpdateItem,
    FieldMeta,
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
    "MAX_BULK_ITEMS",
    "MAX_IDS_PER_CALL",
    "MAX_PAGE_SIZE",
    "Budget",
    "BulkUpdateItem",
    "FieldMeta",
    "Limit",
    "LsqClient",
    "OpportunityDetails",
    "OpportunityRecord",
    "OpportunityType",
    "Outcome",
    "RateLimiter",
    "RowResult",
    "User",
    "WhoAmI",
    "account_limiter",
    "accounts_file",
    "cache_dir",
    "normalise_host",
    "slowest",
    "trace",
]
