"""Rules: the rule model and its loading, Jinja templating, and the checks against the
opportunity types' field metadata."""
