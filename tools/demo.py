"""`make demo`, first stage: the offline half of the main job, on any machine.

Validates and renders examples/quickstart with the same compile() the operator runs, and says what
the rest of the demo (control plane, operator, gateway, SDK calls) will do once it lands.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWITCHBOARD = [sys.executable, "-m", "switchboard.cli"]


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def main() -> int:
    step("validating examples/quickstart (the same checks the operator reports in status)")
    subprocess.run(
        [*SWITCHBOARD, "validate", "--strict", "examples/quickstart"], cwd=ROOT, check=True
    )
    step("rendering its routing config (provider keys redacted)")
    subprocess.run([*SWITCHBOARD, "render", "examples/quickstart"], cwd=ROOT, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
