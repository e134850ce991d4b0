"""aggserver: a real-time, volume-weighted price aggregator over several exchanges."""

__version__ = "0.1.0"
