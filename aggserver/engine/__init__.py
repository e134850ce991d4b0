"""The process's pricing work: refresh, the scheduler, the read path, the price view, freshness."""
