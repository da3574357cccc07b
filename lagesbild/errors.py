"""Errors every part of lagesbild may raise, kept apart so connectors need no settings import."""


class ConfigError(RuntimeError):
    """Bad or missing configuration; the message says what to do."""
