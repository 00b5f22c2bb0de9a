"""The one exception type the command line turns into a one-line message."""


class AsaSnnError(Exception):
    """A problem the user can act on: bad input, a missing optional package, a limit exceeded.

    The message names the file, layer or field involved, the value found and what was
    expected. The CLI prints it on one line and exits non-zero; ``--debug`` shows the
    traceback.
    """


class InputFormatError(AsaSnnError, ValueError):
    """A file or array does not hold what its format promises (corrupt, truncated, out of range)."""


class MissingDependencyError(AsaSnnError, ImportError):
    """An optional package needed for the requested action is not installed."""
