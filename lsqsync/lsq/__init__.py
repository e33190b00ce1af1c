"""The LeadSquared client: session, auth, retries, the rate limiter and the endpoint calls."""

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
from lsqsync.lsq.ratelimit import RateLimiter
from lsqsync.lsq.transport import normalise_host

__all__ = [
    "MAX_BULK_ITEMS",
    "MAX_IDS_PER_CALL",
    "MAX_PAGE_SIZE",
    "BulkUpdateItem",
    "FieldMeta",
    "LsqClient",
    "OpportunityDetails",
    "OpportunityRecord",
    "OpportunityType",
    "Outcome",
    "RateLimiter",
    "RowResult",
    "User",
    "WhoAmI",
    "normalise_host",
]
