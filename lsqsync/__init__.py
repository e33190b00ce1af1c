"""lsqsync: declarative, reviewable bulk changes to LeadSquared opportunities."""

__version__ = "0.1.0"
