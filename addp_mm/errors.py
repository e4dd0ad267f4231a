"""The one exception type for a user's mistake.

:class:`UsageError` is what a wrong setting, a file of the wrong kind or a refused file raise
(their own classes subclass it); the tools print its message as one line and exit with status 2
(``--debug`` shows the traceback). A missing file is a :class:`MissingFileError` (also a
``FileNotFoundError``; :func:`addp_mm.checkpoint.sources.require_file` says it the one way).
Anything else is a bug and keeps its traceback.

This module uses the standard library only: the tools load it before the heavy imports (see
``tools/cli.py``).
"""

__all__ = ['UsageError', 'MissingFileError']


class UsageError(ValueError):
    """A mistake the user can fix; its message says what is wrong and what to do."""


class MissingFileError(UsageError, FileNotFoundError):
    """A file a config or a command line names is not there (the message names the key or
    option, the path, the folder looked in and where the file comes from)."""
