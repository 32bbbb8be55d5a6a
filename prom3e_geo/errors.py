"""Exception types shared by the library and the CLI.

`InputError` marks a problem with what the user gave us (a missing file, a wrong column, an
empty AOI, an output that already exists). The CLI turns it into a one-line message and exit
code 2; anything else is an internal error (exit code 1). The subclasses name the kind of bad
input, so that callers and tests can tell them apart without matching message text.
"""


class Prom3eGeoError(Exception):
    """Base class of every error raised on purpose by prom3e-geo."""


class RunFailed(Prom3eGeoError):
    """A run that could do nothing useful (every cell failed: no network, no scene), or a
    failure of the world rather than of the input. The message is a one-line summary with the
    reasons; the CLI exits 1 with it."""


class DownloadError(RunFailed):
    """A download that failed after its retries (server errors, refused connections, names that
    do not resolve): not bad input, so exit 1."""


class InputError(Prom3eGeoError, ValueError):
    """Bad user input: the message is a complete, one-line explanation."""


class AoiError(InputError):
    """An area of interest, CRS or grid definition that cannot be used."""


class SourceError(InputError):
    """An imagery source spec or option that cannot be used."""


class CredentialsError(SourceError):
    """Missing or rejected credentials for a remote service."""


class StoreMismatchError(InputError):
    """A store (embedding store, patch cache) made by another run, model or grid."""


class WeightsError(InputError):
    """Model or encoder weights that are missing, unsafe or of the wrong layout."""


class UnknownNameError(InputError):
    """A kind chosen by name (source, encoder, preset, masking strategy...) that is not registered."""
