"""stageline: development → staging → production for AI agents, on Git."""

__version__ = "0.1.0"
