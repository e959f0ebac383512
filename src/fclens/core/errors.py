"""The one exception a user sees. Imports nothing, so every layer can raise it."""


class FclensError(RuntimeError):
    """An error a user can act on: bad input, bad params, corrupted file.

    The message names the file or params key, the value found and what was expected; stage
    scripts print it without a traceback and exit 1.
    """
