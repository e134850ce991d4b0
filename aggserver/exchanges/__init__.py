"""Talking to venues: transport limits (throttle, breaker), the exchange client and its listings,
stream ingestion and the venue probe."""
