"""The one exception type vlmtrain shows to users without a traceback."""

from __future__ import annotations


class VLMTrainError(Exception):
    """A problem the user can fix; the message names the record/setting and the fix.

    The command-line entry point prints these as one line (``error: ...``) and exits with
    status 1; every other exception keeps its full traceback because it is a bug.
    """
