"""Limits and budgets of client keys: calendar windows, reserve/settle, and the counter stores.

- windows: `switchboard.routing.windows` (pure; the operator computes the same windows)
- `limiter.py`  reserve before the call, settle after; 429s and x-ratelimit-* headers
- `store.py`    the Store protocol and the in-process store (kept in a file across restarts)
- `redis_store.py`  the shared store on Redis/Valkey (one pipelined round trip per batch)
"""
