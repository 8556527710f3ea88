"""Where limit and budget counters live: the Store protocol, and the in-process store.

A counter is a float under a string key with an expiry (Unix seconds). `reserve()` is the only
check: atomically, if any limited charge finds its counter at or over its limit, nothing is
added and its index is returned; otherwise every amount is added. So the request that crosses
a limit passes and the next one is refused. `add()` queues corrections (settling real usage
against the reservation) that need no answer.

The in-process store (`MemoryStore`) serves one replica and `switchboard gateway --manifests`.
With a `path` it is kept across restarts on the same volume: written atomically (temporary
file, fsync, rename) every `save_interval` seconds when something changed, and on close.
Counters of requests in flight (keys ending in `LIVE`) are not saved: those requests died with
the process.

StoreError
  * StoreDown    the shared store cannot be reached; the limiter applies `on_store_down`
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import orjson

LIVE = "#live"
"""Suffix of in-flight counters: never persisted."""
log = logging.getLogger("switchboard.gateway.limits")


class StoreError(Exception):
    """A counter store failed."""


class StoreDown(StoreError):
    """The store cannot be reached or did not answer in time."""


@dataclass(slots=True)
class Charge:
    """One amount added to one counter (never changed after it is made)."""

    key: str
    amount: float
    limit: float | None
    """None: count only (a budget that reports), never refuse."""
    expires: float
    """Unix seconds after which the counter may be dropped."""


class Store(Protocol):
    async def reserve(self, charges: Sequence[Charge]) -> tuple[int, list[float]]:
        """(-1, values after adding) or (index of the refusing charge, values unchanged)."""

    def add(self, deltas: Sequence[tuple[str, float, float]]) -> None:
        """Queue (key, amount, expires) corrections; applied soon, in order."""

    async def read(self, keys: Sequence[str]) -> list[float]:
        """Current values (0 for a missing key)."""

    async def scan(self, prefix: str) -> dict[str, float]:
        """Every counter whose key starts with `prefix`."""

    async def close(self) -> None: ...


class MemoryStore:
    """Counters in this process; optionally saved to `path` across restarts."""

    def __init__(
        self,
        path: Path | None = None,
        *,
        save_interval: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.save_interval = save_interval
        self.clock = clock
        self.values: dict[str, list[float]] = {}
        """key -> [value, expires]."""
        self._dirty = False
        self._saver: asyncio.Task[None] | None = None
        if path is not None:
            self._load(path)

    # --- the Store protocol -----------------------------------------------------------------

    async def reserve(self, charges: Sequence[Charge]) -> tuple[int, list[float]]:
        return self.reserve_now(charges)

    def reserve_now(self, charges: Sequence[Charge]) -> tuple[int, list[float]]:
        values = self.values
        now = self.clock()
        current = []
        for charge in charges:
            entry = values.get(charge.key)
            current.append(entry[0] if entry is not None and entry[1] > now else 0.0)
        for i, charge in enumerate(charges):
            if charge.limit is not None and current[i] >= charge.limit:
                return i, current
        for i, charge in enumerate(charges):
            current[i] += charge.amount
            values[charge.key] = [current[i], charge.expires]
        self._changed()
        return -1, current

    def add(self, deltas: Sequence[tuple[str, float, float]]) -> None:
        values = self.values
        now = self.clock()
        for key, amount, expires in deltas:
            entry = values.get(key)
            if entry is None or entry[1] <= now:
                values[key] = [amount, expires]
            else:
                entry[0] += amount
                entry[1] = max(entry[1], expires)
        self._changed()

    async def read(self, keys: Sequence[str]) -> list[float]:
        now = self.clock()
        out = []
        for key in keys:
            entry = self.values.get(key)
            out.append(entry[0] if entry is not None and entry[1] > now else 0.0)
        return out

    async def scan(self, prefix: str) -> dict[str, float]:
        now = self.clock()
        return {k: v[0] for k, v in self.values.items() if k.startswith(prefix) and v[1] > now}

    async def close(self) -> None:
        if self._saver is not None:
            self._saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._saver
            self._saver = None
        self.save()

    # --- persistence ------------------------------------------------------------------------

    def _changed(self) -> None:
        self._dirty = True
        if self.path is not None and self._saver is None:
            with contextlib.suppress(RuntimeError):  # no running loop: saved on close
                self._saver = asyncio.get_running_loop().create_task(self._save_soon())

    async def _save_soon(self) -> None:
        await asyncio.sleep(self.save_interval)
        self._saver = None
        self.save()

    def save(self) -> None:
        """Write the counters to `path` atomically (if a path is set and anything changed)."""
        if self.path is None or not self._dirty:
            return
        now = self.clock()
        counters = {k: v for k, v in self.values.items() if v[1] > now and not k.endswith(LIVE)}
        data = orjson.dumps({"version": 1, "counters": counters})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".limits-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            log.error("could not save limit counters to %s: %s", self.path, exc)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return
        self._dirty = False

    def _load(self, path: Path) -> None:
        try:
            raw = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return
        except (OSError, orjson.JSONDecodeError) as exc:
            log.error("limit counters in %s not read (%s); starting from 0", path, exc)
            return
        counters = raw.get("counters") if isinstance(raw, dict) else None
        if not isinstance(counters, dict):
            log.error("limit counters in %s have an unknown shape; starting from 0", path)
            return
        now = self.clock()
        for key, entry in counters.items():
            if (
                isinstance(entry, list)
                and len(entry) == 2
                and all(isinstance(x, (int, float)) for x in entry)
                and entry[1] > now
            ):
                self.values[str(key)] = [float(entry[0]), float(entry[1])]
