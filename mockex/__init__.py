"""mockex: simulated exchanges serving moving, plausible quotes with switchable faults."""

__version__ = "0.1.0"
