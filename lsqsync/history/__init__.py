"""After apply: drift (edits to what lsqsync wrote) and rollback."""
