"""DynamoDB Query answers decoded by orjson instead of botocore's response parser.

botocore walks every attribute of every item through the service model: about 20 µs an item
(``python -m bench.history_reads``), so a page of 1,000 records costs the serving loop 20 ms. A
client made lean here keeps all of botocore's signing, retries and error handling, but the body
of a successful Query answer reaches the caller as bytes (``RAW_BODY``) for orjson, which
decodes it for a fraction of that.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

__all__ = [
    "PAGE_ITEMS",
    "RAW_BODY",
    "QueryAnswer",
    "decode_items",
    "make_lean",
    "query_answer",
    "query_pages",
]

T = TypeVar("T")

# Where a lean client's Query answer carries the undecoded body.
RAW_BODY = "LeanRawBody"
_EVENT = "before-parse.dynamodb.Query"
# Items a Query asks for at most: orjson parses a page in one go (~1 ms for 1,000 records).
PAGE_ITEMS = 1_000
# Items decoded between two yields to the loop (~0.5 ms of work).
DECODE_CHUNK = 200


def _keep_body(response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any) -> None:
    if response_dict.get("status_code") == 200:
        customized_response_dict[RAW_BODY] = response_dict["body"]
        # The parser then has nothing to walk; errors (non-200) are still parsed as botocore does.
        response_dict["body"] = b"{}"


def make_lean(client: DynamoDBClient) -> DynamoDBClient:
    """Make ``client``'s Query answers lean (see the module's doc); returns the client."""
    client.meta.events.register(_EVENT, _keep_body)
    return client


class QueryAnswer:
    """One Query page: its items as DynamoDB JSON and the key to continue from."""

    __slots__ = ("items", "last_key")

    def __init__(self, items: list[dict[str, dict[str, str]]], last_key: dict[str, Any] | None) -> None:
        self.items = items
        self.last_key = last_key


def query_answer(response: Any) -> QueryAnswer:
    """The page in a Query response of a lean client (or, decoded already, of any client)."""
    raw = response.get(RAW_BODY)
    body = orjson.loads(raw) if raw is not None else response
    return QueryAnswer(body.get("Items", []), body.get("LastEvaluatedKey") or None)


async def query_pages(
    client: DynamoDBClient,
    query: Mapping[str, Any],
    *,
    page_items: int,
    wanted: int | None = None,
    timeout: float | None = None,
) -> AsyncGenerator[QueryAnswer, None]:
    """The pages of ``query``, one Query call each of at most ``page_items`` items (DynamoDB
    also ends a page at 1 MB), until ``wanted`` items have come (None: all of them), each call
    within ``timeout`` seconds. A call asks only for what is still wanted."""
    query = dict(query)
    seen = 0
    while wanted is None or seen < wanted:
        limit = page_items if wanted is None else min(page_items, wanted - seen)
        async with asyncio.timeout(timeout):
            response = await client.query(**query, Limit=limit)
        answer = query_answer(response)
        seen += len(answer.items)
        yield answer
        if answer.last_key is None:
            return
        query["ExclusiveStartKey"] = answer.last_key


async def decode_items(items: Sequence[dict[str, Any]], decode: Callable[[dict[str, Any]], T]) -> list[T]:
    """``decode`` of every item, letting the loop answer other requests between chunks: a page of
    1,000 records would otherwise hold it for several milliseconds at once."""
    decoded: list[T] = []
    for start in range(0, len(items), DECODE_CHUNK):
        if start:
            await asyncio.sleep(0)
        decoded.extend(map(decode, items[start : start + DECODE_CHUNK]))
    return decoded
