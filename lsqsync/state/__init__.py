"""The state file: its records, its SQLite schema, the store, and its reports."""
