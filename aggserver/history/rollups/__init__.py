"""Candle rollups: OHLC candles kept in DynamoDB, a block of them per item, so that a candle
answer reads at most one item a candle (usually one item for dozens).

The rollup table (``{PRICES_TABLE}-candles``) keys an item by ``series`` (``btcusdt#1m``) and
``start``, the start of its block: 30 1m candles (half an hour), 12 5m candles (an hour), 24 1h
candles (a day) or 30 1d candles (``ROLLUP_LEVELS``). Attribute ``c`` lists the block's candles
that have records, one ``offset open high low close samples`` each, prices as the records hold
them. An item is never updated in place: it is recomputed whole, a 1m block from the raw records
of its half hour and every longer one from the candles of the level below (``candles.LEVELS``),
which :func:`candles.merge_candles` makes equal to the candles of the raw records. Recomputing
from what is stored is what makes it idempotent: duplicates, retries and records arriving out of
order all end in the same items.

Which blocks need recomputing is kept in Redis, a sorted set per interval, members
``asset|start`` scored by the time (ms) they become due. A history writer marks the block of
every record it has written before it acknowledges the record (so a SIGKILL loses no mark), and
a mark never moves later (``ZADD LT``): every record reaching a block during its level's delay
joins one recompute, which is what keeps the writes few. Writers claim due marks by pushing them
``CLAIM_LEASE_MS`` into the future (one script, so two writers never claim the same mark),
recompute, write, mark the parent blocks, and release only marks nobody re-marked meanwhile; a
writer that dies holding marks leaves them due again once the lease runs out.

Reads (:func:`read_candles`) take candles from the rollups up to where they are settled (every
record written by then is in them: :func:`settled_before`) and compute newer ones from the level
below, down to the raw records of the last minutes, so an answer is as current as the records.
"""
