class KinfuseError(Exception):
    """A user-facing problem (bad input, unreachable service): printed as one line, exit 2."""
