"""The one error type of the input pipelines."""


class DataError(ValueError):
    """Bad or missing data: the message names the file (or folder) and what was wrong.

    A ValueError, so callers that validate arguments with ``except ValueError`` catch it too.
    """
