"""A local LeadSquared-compatible server over SQLite, for demos, tests and benchmarks."""

from lsqsync.emulator.server import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Emulator, Settings

__all__ = ["DEMO_ACCESS_KEY", "DEMO_SECRET_KEY", "Emulator", "Settings"]
