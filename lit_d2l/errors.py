"""Errors a user can cause and fix; the CLI prints them as one line and exits non-zero."""


class UserError(Exception):
    """A problem in the user's input or environment, with the fix in its message."""


class ConfigError(UserError, ValueError):
    """An invalid setting: raised at config time, before any training or tracking starts."""


class NoTestSplit(ConfigError):
    """``test_after_fit`` asked of a run whose data has no test split."""

    def __init__(self) -> None:
        super().__init__("test_after_fit needs a test split: set data.num_test > 0, or test_after_fit false")


class TrackingError(UserError):
    """The tracking store cannot be used (unwritable directory, unreachable server)."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)


def not_utf8(path: object, exc: UnicodeDecodeError) -> ConfigError:
    """A config or spec file that is not UTF-8 text (a Latin-1 comment, a binary file), as one line."""
    byte = exc.object[exc.start : exc.start + 1].hex()
    return ConfigError(
        f"{path}: not UTF-8 text (byte 0x{byte} at offset {exc.start}); save it as UTF-8, e.g."
        f" iconv -f latin1 -t utf-8 {path} > fixed.yaml, or give the YAML file you meant"
    )
