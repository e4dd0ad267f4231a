"""The one exception type for a user's mistake.

:class:`UsageError` is what a wrong setting, a file of the wrong kind or a refused file raise
(their own classes subclass it); the tools print its message as one line and exit with status 2
(``--debug`` shows the traceback). A missing file is Python's own ``FileNotFoundError``, treated
the same way. Anything else is a bug and keeps its traceback.

This module uses the standard library only: the tools load it before the heavy imports (see
``tools/cli.py``).
"""

__all__ = ['UsageError']


class UsageError(ValueError):
    """A mistake the user can fix; its message says what is wrong and what to do."""
