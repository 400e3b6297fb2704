"""The one exception type that reaches the user as a single line."""


class EntropicError(Exception):
    """A problem with the user's input or files, reported as one line without a traceback.

    The message names the culprit (file, key or value) and, where there is one, the fix.
    """
