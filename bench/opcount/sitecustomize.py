"""Python opcodes per function, counted in a gateway process for bench/limits_opcodes.py.

Loaded only with `PYTHONPATH=bench/opcount` and `OPCOUNT_OUT` set: SIGUSR1 starts counting
(`sys.settrace` with opcode events; the process runs many times slower meanwhile), SIGUSR2
stops and writes `{"<qualname> <file>:<line>": opcodes}` as JSON to `OPCOUNT_OUT.<n>`.
Deterministic where timing is not: the same requests execute the same opcodes on a busy
machine and a quiet one.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import sys
from types import CodeType, FrameType
from typing import Any

_OUT = os.environ.get("OPCOUNT_OUT")
_counts: collections.Counter[CodeType] = collections.Counter()
_dumps = [0]


def _local(frame: FrameType, event: str, arg: Any) -> Any:
    if event == "opcode":
        _counts[frame.f_code] += 1
    return _local


def _global(frame: FrameType, event: str, arg: Any) -> Any:
    frame.f_trace_opcodes = True
    return _local


def _start(signum: int, frame: FrameType | None) -> None:
    _counts.clear()
    sys.settrace(_global)


def _stop(signum: int, frame: FrameType | None) -> None:
    sys.settrace(None)
    assert _OUT is not None
    out = {
        f"{c.co_qualname} {os.path.basename(c.co_filename)}:{c.co_firstlineno}": n
        for c, n in _counts.items()
    }
    _dumps[0] += 1
    with open(f"{_OUT}.{_dumps[0]}", "w", encoding="utf-8") as handle:
        json.dump(out, handle)


if _OUT:
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
