"""Pure rules, no I/O: symbols, quotes and their checks, aggregation, the stored price, tiers,
candles, oracle rules, quality guards and reason codes."""
