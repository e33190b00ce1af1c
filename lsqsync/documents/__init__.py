"""YAML and CSV documents with their source positions, schema checks, and located problems.
Imports nothing above it."""
