"""Errors a user can cause and fix; the CLI prints them as one line and exits non-zero."""


class UserError(Exception):
    """A problem in the user's input or environment, with the fix in its message."""


class ConfigError(UserError, ValueError):
    """An invalid setting: raised at config time, before any training or tracking starts."""


class TrackingError(UserError):
    """The tracking store cannot be used (unwritable directory, unreachable server)."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)
