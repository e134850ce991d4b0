"""DynamoDB Query answers decoded by orjson instead of botocore's response parser.

botocore walks every attribute of every item through the service model: about 20 µs an item
(``python -m bench.history_reads``), so a page of 1,000 records costs the serving loop 20 ms. A
client made lean here keeps all of botocore's signing, retries and error handling, but the body
of a successful Query answer reaches the caller as bytes (``RAW_BODY``) for orjson, which
decodes it for a fraction of that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

__all__ = ["RAW_BODY", "QueryAnswer", "make_lean", "query_answer"]

# Where a lean client's Query answer carries the undecoded body.
RAW_BODY = "LeanRawBody"
_EVENT = "before-parse.dynamodb.Query"


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
