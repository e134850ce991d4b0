"""What every price write tells the other processes: the new stored values themselves.

Each write of prices publishes one message on ``UPDATES_CHANNEL`` in the same round trip (one
transaction, so messages arrive in the order Redis applied the writes). A message is one line per
asset: ``asset SP stored-json`` for a value that is now in Redis, or the bare asset when the write
may not have stored it (``SET NX`` of a price restored from history): readers must then ask Redis.
Stored JSON never holds a raw newline and symbols are ``[a-z0-9]``, so the lines need no escaping.
Carrying the value lets each process keep a current copy of every price it hears about without
reading it back: at 10,000 updates a second, dropping copies instead would leave nothing cached.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["UPDATES_CHANNEL", "Announcement", "decode_announcement", "encode_announcement"]

# Renamed from ``prices:updated`` when messages began to carry values: during a rolling upgrade
# old and new processes do not misread each other (each side's copies then age out instead).
UPDATES_CHANNEL = "prices:values"

# An announced asset and its stored JSON, or None: changed, read it from Redis.
Announcement = tuple[str, bytes | None]


def encode_announcement(announcements: Iterable[Announcement]) -> bytes:
    return b"\n".join(
        asset.encode() if value is None else b"%s %s" % (asset.encode(), value)
        for asset, value in announcements
    )


def decode_announcement(message: bytes) -> list[Announcement]:
    announcements: list[Announcement] = []
    for line in message.split(b"\n"):
        asset, separator, value = line.partition(b" ")
        if asset:
            announcements.append((asset.decode(), value if separator else None))
    return announcements
