"""The one exception type users see: the CLI prints its message as a single line and exits with code 2."""


class FleetsimError(Exception):
    """Bad input or an impossible request, described in one line that names the file, row or field at fault."""
