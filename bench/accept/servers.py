"""Start the bench upstream and the three servers of bench/accept/ on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.run import PY, ROOT, free_port, process

HERE = Path(__file__).resolve().parent
GRANIAN = str(Path(PY).parent / "granian")
NAMES = ("aiohttp", "h1", "granian", "granian_rust")
"""granian_rust: granian with `--task-impl rust` (its own task type instead of asyncio's)."""


def command(name: str, port: int, upstream: str) -> tuple[list[str], dict[str, str]]:
    """The command line and extra environment of one server."""
    if name in ("aiohttp", "h1"):
        script = HERE / f"{name}_server.py"
        return [PY, str(script), "--port", str(port), "--upstream", upstream], {}
    if name in ("granian", "granian_rust"):
        args = [GRANIAN, "--interface", "rsgi", "--workers", "1", "--runtime-threads", "1"]
        args += ["--runtime-mode", "st", "--loop", "uvloop", "--http", "1", "--no-ws"]
        args += ["--backlog", "4096", "--no-access-log", "--log-level", "warning"]
        args += ["--host", "127.0.0.1", "--port", str(port), "bench.accept.granian_app:app"]
        if name == "granian_rust":
            args += ["--task-impl", "rust"]
        env = {"ACCEPT_UPSTREAM": upstream, "PYTHONPATH": f"{ROOT}:{ROOT / 'operator'}"}
        return args, env
    raise ValueError(f"unknown server {name!r}: one of {', '.join(NAMES)}")


@contextlib.contextmanager
def running(
    work: Path, names: tuple[str, ...] = NAMES, upstream_args: tuple[str, ...] = ()
) -> Iterator[tuple[int, dict[str, tuple[int, int]]]]:
    """The bench upstream's port and {name: (port, pid)} of the servers that started (a failed
    one is left out, its log in `work`), all against that upstream."""
    up_port = free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    with contextlib.ExitStack() as stack:
        up = stack.enter_context(
            process(
                [PY, str(ROOT / "bench/upstream_fast.py"), "--port", str(up_port), *upstream_args],
                upstream + "/",
                work / "upstream.log",
            )
        )
        if up is None:
            raise RuntimeError(f"the bench upstream did not start ({work / 'upstream.log'})")
        out: dict[str, tuple[int, int]] = {}
        for name in names:
            port = free_port()
            args, env = command(name, port, upstream)
            env = {**env, "PYTHONPATH": env.get("PYTHONPATH", str(ROOT / "operator"))}
            proc = stack.enter_context(
                process(args, f"http://127.0.0.1:{port}/ready", work / f"{name}.log", env)
            )
            if proc is not None:
                out[name] = (port, proc.pid)
        yield up_port, out


def tree_pids(pid: int) -> list[int]:
    """A process and its descendants (granian's worker is a child of its supervisor)."""
    pids = [pid]
    for p in pids:
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{p}/task"):
                children = Path(f"/proc/{p}/task/{task}/children").read_text().split()
                pids += [int(c) for c in children]
    return pids
