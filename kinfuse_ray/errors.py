class KinfuseError(Exception):
    """A user-facing problem (bad input, unreachable service): printed as one line, exit 2."""


class KinfuseWarning(UserWarning):
    """A forecast the law's own range does not support (a size or budget far outside the fitted
    ones, a budget a law without a D term never saw): raised through Python's `warnings`, so a
    notebook shows it, as well as kept in `Prediction.warnings`."""
