"""The one exception type the command line turns into a one-line error."""


class VidmError(Exception):
    """A problem with the user's input or files, reported without a traceback."""
