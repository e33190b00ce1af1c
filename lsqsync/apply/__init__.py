"""Applying a reviewed plan: the pure engine (freshness, batching, bisection) and the runner
around it (plan and state files, the lock, workers, Ctrl-C)."""
