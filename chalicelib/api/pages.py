"""Pagination for every list endpoint: `limit` (1..100, default 20), `starting_after` (the id of the last
item of the previous page) and `has_more`. Nothing is cut off silently: a page says whether more follow.

Small, bounded lists (a payment's refunds and documents, a merchant's webhook endpoints and alert
bindings, the rate table) are paged in memory; unbounded ones (events, withdrawals) page in DynamoDB
(`query_page`).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from chalicelib.api.errors import invalid

MAX_STARTING_AFTER = 64


def params(query: dict | None) -> tuple[int, str | None]:
    from chalicelib.services.balances import list_limit

    query = query or {}
    after = query.get("starting_after")
    if after is not None and (not after or len(after) > MAX_STARTING_AFTER):
        raise invalid("parameter_invalid", "starting_after must be the id of an item of the list", "starting_after")
    return list_limit(query), after   # a bad limit: 400 parameter_invalid


def page(items: Iterable[dict], query: dict | None, id_of: Callable[[dict], str] = lambda i: i["id"]) -> dict:
    """A page of an in-memory list, in its order."""
    limit, after = params(query)
    items = list(items)
    if after is not None:
        ids = [id_of(i) for i in items]
        if after not in ids:
            raise invalid("parameter_invalid", "starting_after must be the id of an item of the list",
                          "starting_after")
        items = items[ids.index(after) + 1:]
    return listing(items[:limit], len(items) > limit)


def listing(data: list[Any], has_more: bool) -> dict:
    return {"object": "list", "data": data, "has_more": has_more}


def query_page(results: Iterable, limit: int) -> tuple[list, bool]:
    """The first `limit` items of a lazily paged DynamoDB query (filters may drop items, so read on until
    limit + 1 are found or the query ends), and whether more follow."""
    out = []
    for item in results:
        out.append(item)
        if len(out) > limit:
            return out[:limit], True
    return out, False
