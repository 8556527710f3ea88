"""Waiting for a condition with a deadline: the tests' one polling loop. Tests never sleep to
synchronise and never bound a duration from above; they poll until the condition holds and fail
naming it when the deadline (generous: the machines are shared) passes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_for(
    check: Callable[[], T], what: str = "condition", timeout: float = 30.0, step: float = 0.05
) -> T:
    """`check()` until it returns something truthy, which is returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout:g} s")
        time.sleep(step)


async def until(
    check: Callable[[], Awaitable[Any]],
    what: str = "condition",
    timeout: float = 30.0,
    step: float = 0.05,
    retry: tuple[type[BaseException], ...] = (),
) -> Any:
    """`await check()` until it returns something truthy, which is returned; the exceptions in
    `retry` count as not yet (the last one is raised at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = await check()
        except retry:
            if time.monotonic() > deadline:
                raise
        else:
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not met within {timeout:g} s")
        await asyncio.sleep(step)
