"""Redis key names: hash-tagged only on a cluster."""

from __future__ import annotations

from aggserver.store.connection import CLUSTER_BUCKETS
from aggserver.store.prices import price_key


def test_keys_are_hash_tagged_only_on_a_cluster() -> None:
    assert price_key("btcusdt") == "price:btcusdt"
    tagged = price_key("btcusdt", cluster=True)
    assert tagged.startswith("price:{")
    assert tagged.endswith("}btcusdt")
    assert {price_key(f"a{i}", cluster=True)[:10] for i in range(1000)} == {
        f"price:{{{bucket:02d}}}" for bucket in range(CLUSTER_BUCKETS)
    }
