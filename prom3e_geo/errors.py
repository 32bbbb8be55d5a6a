"""Exception types shared by the library and the CLI.

`InputError` marks a problem with what the user gave us (a missing file, a wrong column, an
empty AOI, an output that already exists). The CLI turns it into a one-line message and exit
code 2; anything else is an internal error (exit code 1).
"""


class Prom3eGeoError(Exception):
    """Base class of every error raised on purpose by prom3e-geo."""


class InputError(Prom3eGeoError, ValueError):
    """Bad user input: the message is a complete, one-line explanation."""
