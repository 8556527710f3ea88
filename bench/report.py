"""Render docs/bench/results.json into the `## Gateway benchmark` section of docs/performance.md,
with PNG plots in docs/bench/. `python bench/report.py` (run by `make bench`)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs/bench/results.json"
DOC = ROOT / "docs/performance.md"
START = "<!-- gateway-benchmark:start -->"
END = "<!-- gateway-benchmark:end -->"


def _get(rows: list[dict[str, Any]], scenario: str, system: str) -> dict[str, Any]:
    for row in rows:
        if row["scenario"] == scenario and row["system"] == system:
            return row
    return {}


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def plots(data: dict[str, Any]) -> None:
    rows = data["results"]
    out = ROOT / "docs/bench"
    b = [r for r in rows if r["scenario"] == "b_64_clients"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar([r["system"] for r in b], [r["rps"] for r in b], color="#4c72b0")
    ax.set_yscale("log")
    ax.set_ylabel("requests/s (log)")
    ax.set_title("64 concurrent clients, non-streaming")
    for i, r in enumerate(b):
        ax.text(i, r["rps"], f"{r['rps']:,.0f}", ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=110)
    plt.close(fig)

    a = [r for r in rows if r["scenario"] == "a_one_client"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    xs = range(len(a))
    ax.bar([x - 0.2 for x in xs], [r["p50_ms"] for r in a], width=0.4, label="p50")
    ax.bar([x + 0.2 for x in xs], [r["p99_ms"] for r in a], width=0.4, label="p99")
    ax.set_xticks(list(xs), [r["system"] for r in a])
    ax.set_yscale("log")
    ax.set_ylabel("ms (log)")
    ax.set_title("one client at a time: latency")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)

    if data.get("soak"):
        fig, ax = plt.subplots(figsize=(7, 3))
        ax.plot([t for t, _ in data["soak"]], [m for _, m in data["soak"]])
        ax.set_xlabel("seconds")
        ax.set_ylabel("RSS MB")
        ax.set_ylim(bottom=0)
        ax.set_title("switchboard gateway RSS under a steady 16-client load")
        fig.tight_layout()
        fig.savefig(out / "soak.png", dpi=110)
        plt.close(fig)


def section(data: dict[str, Any]) -> str:
    rows = data["results"]
    g = lambda s, n: _get(rows, s, n)  # noqa: E731
    direct_a, sb_a = g("a_one_client", "direct"), g("a_one_client", "switchboard")
    raw_b, sb_b, ll_b = (
        g("b_64_clients", "raw_proxy"),
        g("b_64_clients", "switchboard"),
        g("b_64_clients", "litellm"),
    )
    w2 = g("b_64_clients", "switchboard_w2")
    direct_c, sb_c = g("c_1000_streams", "direct"), g("c_1000_streams", "switchboard")
    msg_a, msg_b = (
        g("e_messages_one_client", "switchboard"),
        g("e_messages_64_clients", "switchboard"),
    )
    soak = g("d_soak", "switchboard")

    def ratio(a: dict[str, Any], b: dict[str, Any], key: str) -> float | None:
        return a[key] / b[key] if a.get(key) and b.get(key) else None

    added_p50 = sb_a["p50_ms"] - direct_a["p50_ms"] if sb_a and direct_a else None
    added_p99 = sb_a["p99_ms"] - direct_a["p99_ms"] if sb_a and direct_a else None
    added_ttft = sb_c["ttft_p99_ms"] - direct_c["ttft_p99_ms"] if sb_c and direct_c else None
    vs_raw = ratio(sb_b, raw_b, "rps")
    vs_ll = ratio(sb_b, ll_b, "rps")
    peak = max((r["rss_mb"] or 0) for r in rows if r["system"] == "switchboard")
    msg_cost = (
        (msg_a["p50_ms"] - sb_a["p50_ms"]) / (sb_a["p50_ms"] - direct_a["p50_ms"])
        if msg_a and sb_a and direct_a
        else None
    )
    msg_rps = 1 - msg_b["rps"] / sb_b["rps"] if msg_b and sb_b else None

    def verdict(ok: bool | None) -> str:
        return "–" if ok is None else ("**met**" if ok else "**missed**")

    targets = [
        (
            "64 clients: ≥ 60 % of the raw aiohttp proxy's req/s",
            f"{_fmt(vs_raw and vs_raw * 100, 0)} % "
            f"({_fmt(sb_b.get('rps'), 0)} vs {_fmt(raw_b.get('rps'), 0)})",
            verdict(vs_raw is not None and vs_raw >= 0.6 if vs_raw else None),
        ),
        (
            "64 clients: ≥ 30 × LiteLLM's req/s",
            f"{_fmt(vs_ll, 1)} × ({_fmt(ll_b.get('rps'), 0)} req/s for LiteLLM)",
            verdict(vs_ll >= 30 if vs_ll else None),
        ),
        (
            "64 clients: p99 ≤ 40 ms",
            f"{_fmt(sb_b.get('p99_ms'))} ms",
            verdict(sb_b.get("p99_ms") <= 40 if sb_b.get("p99_ms") else None),
        ),
        (
            "one client: added p50 ≤ 0.35 ms",
            f"{_fmt(added_p50, 3)} ms",
            verdict(added_p50 <= 0.35 if added_p50 is not None else None),
        ),
        (
            "one client: added p99 ≤ 0.6 ms",
            f"{_fmt(added_p99, 3)} ms",
            verdict(added_p99 <= 0.6 if added_p99 is not None else None),
        ),
        (
            "1,000 streams: added TTFT p99 ≤ 10 ms",
            f"{_fmt(added_ttft, 1)} ms",
            verdict(added_ttft <= 10 if added_ttft is not None else None),
        ),
        (
            "1,000 streams: none dropped",
            f"{_fmt(sb_c.get('dropped'))} dropped",
            verdict(sb_c.get("dropped") == 0 if sb_c else None),
        ),
        (
            "RSS ≤ 100 MB under load and over the soak",
            f"peak {_fmt(peak, 1)} MB; soak "
            f"{_fmt(soak.get('start_rss_mb'), 1)} → {_fmt(soak.get('end_rss_mb'), 1)} MB",
            verdict(peak <= 100),
        ),
        (
            "translation (Messages client, OpenAI upstream) ≤ 10 % cost",
            f"added p50 +{_fmt(msg_cost and msg_cost * 100, 0)} %, "
            f"req/s −{_fmt(msg_rps and msg_rps * 100, 0)} %",
            verdict(
                msg_rps <= 0.10 and msg_cost <= 0.10
                if msg_rps is not None and msg_cost is not None
                else None
            ),
        ),
    ]
    lines = [
        START,
        "## Gateway benchmark",
        "",
        f"One run of `make bench` on this machine ({data['machine']['cpus']} cores, "
        f"{data['machine']['platform']}), every system in its own process on loopback against "
        f"the same upstream (`bench/upstream_fast.py`), load from `wrk` "
        f"({data['versions'].get('wrk', '?')}), {data['bench_seconds']} s per run; streams from "
        f"`bench/stream_client.py`. Versions: "
        + ", ".join(f"{k} {v}" for k, v in data["versions"].items() if k != "wrk")
        + ".",
        "",
        "### Targets",
        "",
        "| target | measured | |",
        "| --- | --- | --- |",
        *[f"| {t} | {m} | {v} |" for t, m, v in targets],
        "",
        "### All figures",
        "",
        "| scenario | system | req/s | p50 ms | p99 ms | TTFT p99 ms | dropped | RSS MB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *[
            f"| {r['scenario']} | {r['system']} | {_fmt(r['rps'], 0)} | {_fmt(r['p50_ms'], 3)} | "
            f"{_fmt(r['p99_ms'], 3)} | {_fmt(r['ttft_p99_ms'], 1)} | {_fmt(r['dropped'])} | "
            f"{_fmt(r['rss_mb'], 1)} |"
            for r in rows
        ],
        "",
        "![throughput](bench/throughput.png)",
        "![latency](bench/latency.png)",
        "![soak](bench/soak.png)" if data.get("soak") else "",
        "",
        f"Two workers (`--workers 2`): {_fmt(w2.get('rps'), 0)} req/s at 64 clients "
        f"({_fmt(ratio(w2, sb_b, 'rps'), 2)} × one worker).",
        "",
        END,
    ]
    return "\n".join(lines)


def main() -> None:
    data = json.loads(RESULTS.read_text())
    plots(data)
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
    block = section(data)
    if START in text:
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text)
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
