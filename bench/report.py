"""Render docs/bench/results.json into the `## Gateway benchmark` section of docs/performance.md
(between its start and end markers; the rest of the file is left alone), with PNG plots in
docs/bench/. `python bench/report.py` (run by `make bench` after bench/run.py)."""

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
OUT = ROOT / "docs/bench"
START = "<!-- gateway-benchmark:start -->"
END = "<!-- gateway-benchmark:end -->"
ORDER = (
    "direct",
    "raw_proxy",
    "switchboard_base",
    "switchboard",
    "switchboard_otel",
    "switchboard_w2",
    "litellm",
)
SCENARIOS = (
    "a_one_client",
    "b_64_clients",
    "c_1000_streams",
    "s_spread_streams",
    "d_soak",
    "e_messages_one_client",
    "e_messages_64_clients",
    "e_messages_streams",
    "g_chat_native_one_client",
    "g_messages_native_one_client",
    "g_chat_native_64_clients",
    "g_messages_native_64_clients",
)
COLOURS = {
    "direct": "#8c8c8c",
    "raw_proxy": "#4c72b0",
    "switchboard_base": "#c9c9a3",
    "switchboard": "#55a868",
    "switchboard_otel": "#dd8452",
    "switchboard_w2": "#8fd19e",
    "litellm": "#c44e52",
}


def _rows(rows: list[dict[str, Any]], scenario: str) -> list[dict[str, Any]]:
    found = [r for r in rows if r["scenario"] == scenario]
    return sorted(found, key=lambda r: ORDER.index(r["system"]) if r["system"] in ORDER else 99)


def _get(rows: list[dict[str, Any]], scenario: str, system: str) -> dict[str, Any]:
    return next((r for r in _rows(rows, scenario) if r["system"] == system), {})


def _runs(sb: dict[str, Any], direct: dict[str, Any]) -> str:
    """ "; medians of N runs in turns with direct (p99 per run: ... and ...)", when there were."""
    mine, theirs = sb.get("ttft_p99_runs"), direct.get("ttft_p99_runs")
    if not mine or not theirs or len(mine) < 2:
        return ""
    return (
        f"; medians of {len(mine)} runs in turns with direct, p99 per run "
        f"{', '.join(_fmt(v, 0) for v in mine)} vs {', '.join(_fmt(v, 0) for v in theirs)} ms"
    )


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _bars(
    name: str,
    title: str,
    ylabel: str,
    rows: list[dict[str, Any]],
    keys: list[tuple[str, str]],
    *,
    log: bool = False,
) -> str | None:
    rows = [r for r in rows if any(r.get(k) is not None for k, _ in keys)]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    width = 0.8 / len(keys)
    for j, (key, label) in enumerate(keys):
        xs = [i + (j - (len(keys) - 1) / 2) * width for i in range(len(rows))]
        values = [r.get(key) or 0 for r in rows]
        colours = [COLOURS.get(r["system"], "#999") for r in rows]
        ax.bar(
            xs,
            values,
            width=width * 0.95,
            color=colours,
            label=label,
            hatch="//" if j else None,
            alpha=0.6 if j else 1.0,
            edgecolor="white",
        )
        for x, v, r in zip(xs, values, rows, strict=True):
            if r.get(key) is not None:
                ax.text(x, v, f"{v:,.3g}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(rows)), [r["system"] for r in rows])
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(keys) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / name, dpi=110)
    plt.close(fig)
    return name


def plots(data: dict[str, Any]) -> list[tuple[str, str]]:
    rows = data["results"]
    made = [
        (
            "requests/s, 64 clients",
            _bars(
                "throughput.png",
                "(b) 64 concurrent clients, non-streaming",
                "requests/s (log)",
                _rows(rows, "b_64_clients"),
                [("rps", "req/s")],
                log=True,
            ),
        ),
        (
            "latency, one client",
            _bars(
                "latency.png",
                "(a) one client at a time: latency",
                "ms (log)",
                _rows(rows, "a_one_client"),
                [("p50_ms", "p50"), ("p99_ms", "p99")],
                log=True,
            ),
        ),
        (
            "time to first token, 1,000 streams",
            _bars(
                "ttft.png",
                "(c) 1,000 concurrent streams of 100 tokens",
                "time to first token, ms (log)",
                _rows(rows, "c_1000_streams"),
                [("ttft_p50_ms", "p50"), ("ttft_p99_ms", "p99")],
                log=True,
            ),
        ),
        (
            "time to first token, spread arrivals",
            _bars(
                "ttft_spread.png",
                "(s) 1,000 streams arriving 200 a second",
                "time to first token, ms (log)",
                _rows(rows, "s_spread_streams"),
                [("ttft_p50_ms", "p50"), ("ttft_p99_ms", "p99")],
                log=True,
            ),
        ),
        (
            "RSS under load",
            _bars(
                "rss.png",
                "(d) peak RSS of the system's processes",
                "MB",
                [
                    {
                        "system": r["system"],
                        "b": r.get("rss_mb"),
                        "c": _get(rows, "c_1000_streams", r["system"]).get("rss_mb"),
                    }
                    for r in _rows(rows, "b_64_clients")
                    if r["system"] != "direct"
                ],
                [("b", "during (b) 64 clients"), ("c", "during (c) 1,000 streams")],
            ),
        ),
    ]
    if data.get("soak"):
        fig, ax = plt.subplots(figsize=(7.5, 3))
        ax.plot([t for t, _ in data["soak"]], [m for _, m in data["soak"]], color="#55a868")
        ax.set_xlabel("seconds")
        ax.set_ylabel("RSS MB")
        ax.set_ylim(bottom=0)
        ax.set_title("(d) switchboard gateway RSS under a steady 16-client load")
        fig.tight_layout()
        fig.savefig(OUT / "soak.png", dpi=110)
        plt.close(fig)
        made.append(("RSS over the soak", "soak.png"))
    return [(title, name) for title, name in made if name]


def targets(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    def g(scenario: str, system: str) -> dict[str, Any]:
        return _get(rows, scenario, system)

    direct_a, sb_a = g("a_one_client", "direct"), g("a_one_client", "switchboard")
    raw_b, sb_b, ll_b = (
        g("b_64_clients", "raw_proxy"),
        g("b_64_clients", "switchboard"),
        g("b_64_clients", "litellm"),
    )
    direct_c, sb_c = g("c_1000_streams", "direct"), g("c_1000_streams", "switchboard")
    direct_s, sb_s = g("s_spread_streams", "direct"), g("s_spread_streams", "switchboard")
    msg_a, msg_b = (
        g("e_messages_one_client", "switchboard"),
        g("e_messages_64_clients", "switchboard"),
    )
    soak = g("d_soak", "switchboard")
    if not sb_b:
        return []

    def ratio(a: dict[str, Any], b: dict[str, Any], key: str) -> float | None:
        return a[key] / b[key] if a.get(key) and b.get(key) else None

    def diff(a: dict[str, Any], b: dict[str, Any], key: str) -> float | None:
        return a[key] - b[key] if a.get(key) is not None and b.get(key) is not None else None

    def verdict(ok: bool | None) -> str:
        return "–" if ok is None else ("**met**" if ok else "**missed**")

    added_p50, added_p99 = diff(sb_a, direct_a, "p50_ms"), diff(sb_a, direct_a, "p99_ms")
    added_ttft = diff(sb_c, direct_c, "ttft_p99_ms")
    added_spread = diff(sb_s, direct_s, "ttft_p99_ms")
    spread_sign = "+" if added_spread is not None and added_spread >= 0 else ""
    done_ratio = ratio(sb_c, direct_c, "seconds")
    vs_raw, vs_ll = ratio(sb_b, raw_b, "rps"), ratio(sb_b, ll_b, "rps")
    peaks = [r["rss_mb"] for r in rows if r["system"] == "switchboard" and r.get("rss_mb")]
    peak = max(peaks) if peaks else None
    sb_added = diff(sb_a, direct_a, "p50_ms")
    msg_cost = (
        (msg_a["p50_ms"] - sb_a["p50_ms"]) / sb_added if msg_a and sb_a and sb_added else None
    )
    msg_rps = 1 - msg_b["rps"] / sb_b["rps"] if msg_b and sb_b.get("rps") else None
    p99 = sb_b.get("p99_ms")

    def tokens_per_second(row: dict[str, Any]) -> float | None:
        return row["tokens"] / row["seconds"] if row.get("tokens") and row.get("seconds") else None

    sb_tps, direct_tps = tokens_per_second(sb_c), tokens_per_second(direct_c)
    tps_ratio = sb_tps / direct_tps if sb_tps and direct_tps else None
    base_a, base_b = g("a_one_client", "switchboard_base"), g("b_64_clients", "switchboard_base")
    vs_base_b, vs_base_a = ratio(sb_b, base_b, "rps"), ratio(sb_a, base_a, "rps")
    limits_b = g("b_64_clients_limits", "switchboard")
    # Interleaved on the limits gateway itself (off: the key without limits) when recorded.
    vs_limits = ratio(
        limits_b, {"rps": limits_b.get("rps_off")} if limits_b.get("rps_off") else sb_b, "rps"
    )
    limits_off_rps = limits_b.get("rps_off") or sb_b.get("rps")
    limits_cpu = ratio(limits_b, {"cpu_us": limits_b.get("cpu_us_off")}, "cpu_us")
    w2_b = g("b_64_clients", "switchboard_w2")
    vs_w2 = ratio(w2_b, sb_b, "rps")
    chat_native = g("g_chat_native_64_clients", "switchboard")
    msg_native = g("g_messages_native_64_clients", "switchboard")
    chat_native_a = g("g_chat_native_one_client", "switchboard")
    msg_native_a = g("g_messages_native_one_client", "switchboard")
    native = ratio(msg_native, chat_native, "rps")
    native_a = diff(msg_native_a, chat_native_a, "p50_ms")
    h_sb, h_base = (
        g("h_base_interleaved", "switchboard"),
        g("h_base_interleaved", "switchboard_base"),
    )
    h_rows = []
    if h_sb and h_base:
        for label, rps, cpu in (
            ("64 clients", "rps", "cpu_us"),
            ("one client", "rps_one", "cpu_us_one"),
        ):
            rps_ratio, cpu_ratio = ratio(h_sb, h_base, rps), ratio(h_sb, h_base, cpu)
            h_rows.append(
                (
                    f"{label}: no regression beyond 3 % against BENCH_BASE, interleaved "
                    "(h; the gateway's CPU per request decides, req/s beside it)",
                    f"CPU per request {_fmt(cpu_ratio and cpu_ratio * 100, 1)} % of the base's "
                    f"({_fmt(h_sb.get(cpu), 1)} vs {_fmt(h_base.get(cpu), 1)} µs); req/s "
                    f"{_fmt(rps_ratio and rps_ratio * 100, 1)} % "
                    f"({_fmt(h_sb.get(rps), 0)} vs {_fmt(h_base.get(rps), 0)})",
                    verdict(cpu_ratio <= 1.03 if cpu_ratio else None),
                )
            )
    extra = [
        *h_rows,
        (
            "64 clients: no regression beyond 3 % against BENCH_BASE (same run)",
            f"{_fmt(vs_base_b and vs_base_b * 100, 1)} % "
            f"({_fmt(sb_b.get('rps'), 0)} vs {_fmt(base_b.get('rps'), 0)})",
            verdict(vs_base_b >= 0.97 if vs_base_b else None),
        ),
        (
            "one client: no regression beyond 3 % against BENCH_BASE (same run)",
            f"{_fmt(vs_base_a and vs_base_a * 100, 1)} % of its req/s; p50 "
            f"{_fmt(sb_a.get('p50_ms'), 3)} vs {_fmt(base_a.get('p50_ms'), 3)} ms",
            verdict(vs_base_a >= 0.97 if vs_base_a else None),
        ),
        (
            "64 clients with limits on (Redis): within 15 % of limits off "
            "(interleaved on one gateway, medians)",
            f"{_fmt(vs_limits and vs_limits * 100, 0)} % "
            f"({_fmt(limits_b.get('rps'), 0)} vs {_fmt(limits_off_rps, 0)} req/s); CPU per "
            f"request {_fmt(limits_b.get('cpu_us'), 1)} vs {_fmt(limits_b.get('cpu_us_off'), 1)} "
            f"µs ({_fmt(limits_cpu, 2)} ×)",
            verdict(vs_limits >= 0.85 if vs_limits else None),
        ),
        (
            "two workers: 64-client req/s ≥ 1.6 × one worker",
            f"{_fmt(vs_w2, 2)} × ({_fmt(w2_b.get('rps'), 0)} vs {_fmt(sb_b.get('rps'), 0)})",
            verdict(vs_w2 >= 1.6 if vs_w2 else None),
        ),
        (
            "Messages client on a Messages provider costs no more than Chat on Chat",
            f"64 clients {_fmt(native and native * 100, 0)} % of Chat's req/s; one client "
            f"p50 {'+' if (native_a or 0) >= 0 else ''}{_fmt(native_a, 3)} ms",
            verdict(
                native >= 0.97 and native_a <= 0.02
                if native is not None and native_a is not None
                else None
            ),
        ),
    ]
    base = [
        (
            "64 clients: ≥ 60 % of the raw aiohttp proxy's req/s",
            f"{_fmt(vs_raw and vs_raw * 100, 0)} % "
            f"({_fmt(sb_b.get('rps'), 0)} vs {_fmt(raw_b.get('rps'), 0)})",
            verdict(vs_raw >= 0.6 if vs_raw else None),
        ),
        (
            "64 clients: ≥ 30 × LiteLLM's req/s",
            f"{_fmt(vs_ll, 1)} × ({_fmt(ll_b.get('rps'), 0)} req/s for LiteLLM)",
            verdict(vs_ll >= 30 if vs_ll else None),
        ),
        ("64 clients: p99 ≤ 40 ms", f"{_fmt(p99)} ms", verdict(p99 <= 40 if p99 else None)),
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
            "1,000 streams at once: all done within 1.3 × direct's time",
            f"{_fmt(done_ratio, 2)} × ({_fmt(sb_c.get('seconds'))} vs "
            f"{_fmt(direct_c.get('seconds'))} s)",
            verdict(done_ratio <= 1.3 if done_ratio is not None else None),
        ),
        (
            "1,000 streams at once: TTFT p99 within 150 ms of direct's",
            f"+{_fmt(added_ttft, 1)} ms ({_fmt(sb_c.get('ttft_p99_ms'), 1)} vs "
            f"{_fmt(direct_c.get('ttft_p99_ms'), 1)} ms{_runs(sb_c, direct_c)})",
            verdict(added_ttft <= 150 if added_ttft is not None else None),
        ),
        (
            "spread arrivals (200 new streams/s, up to 1,000 open): added TTFT p99 ≤ 10 ms",
            f"{spread_sign}{_fmt(added_spread, 1)} ms "
            f"({_fmt(sb_s.get('ttft_p99_ms'), 1)} vs {_fmt(direct_s.get('ttft_p99_ms'), 1)} ms; "
            f"peak {_fmt(sb_s.get('peak_open'))} open{_runs(sb_s, direct_s)})",
            verdict(added_spread <= 10 if added_spread is not None else None),
        ),
        (
            "1,000 streams (at once and spread): none dropped",
            f"{_fmt(sb_c.get('dropped'))} and {_fmt(sb_s.get('dropped'))} dropped",
            verdict(sb_c.get("dropped") == 0 and sb_s.get("dropped", 0) == 0 if sb_c else None),
        ),
        (
            "1,000 streams: token throughput equal to direct",
            f"{_fmt(sb_tps, 0)} vs {_fmt(direct_tps, 0)} tokens/s "
            f"({_fmt(tps_ratio and tps_ratio * 100, 0)} %)",
            verdict(tps_ratio >= 0.95 if tps_ratio is not None else None),
        ),
        (
            "RSS ≤ 100 MB under load and over the soak",
            f"peak {_fmt(peak, 1)} MB; soak "
            f"{_fmt(soak.get('start_rss_mb'), 1)} → {_fmt(soak.get('end_rss_mb'), 1)} MB",
            verdict(peak <= 100 if peak is not None else None),
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
    return [*extra, *base]


def section(data: dict[str, Any]) -> str:
    rows = data["results"]
    machine, versions = data["machine"], data["versions"]
    generator = next((r["generator"] for r in rows if r.get("generator")), "bench/streamgen")
    load = machine.get("loadavg_start")
    lines = [
        START,
        "## Gateway benchmark",
        "",
        f"One run of `make bench` ({data.get('date', 'date not recorded')}, commit "
        f"{versions.get('commit', '?')}) on this machine: {machine['cpus']} cores"
        + (f" ({machine['cpu']})" if machine.get("cpu") else "")
        + f", {machine['platform']}"
        + (
            f", load average {load[0]:.1f} at the start and "
            f"{machine['loadavg_end'][0]:.1f} at the end (the cores are shared)"
            if load and machine.get("loadavg_end")
            else ""
        )
        + ". Every system runs in its own process on loopback against the same upstream "
        "(`bench/upstream_fast.py`, a raw asyncio server: **direct** is that upstream alone, so "
        "its row is also the upstream's own ceiling). Request load comes from `wrk` "
        f"({versions.get('wrk', '?')}) in its own process, {data['bench_seconds']} s per run, "
        "with its `--latency` percentiles (HdrHistogram, microsecond resolution); streams from "
        f"{generator}, 100 tokens 20 ms apart per stream. Versions: "
        + ", ".join(f"{k} {v}" for k, v in versions.items() if k not in ("wrk", "commit"))
        + ".",
        "",
    ]
    if data.get("skipped"):
        lines += [
            "Skipped in this run: "
            + "; ".join(f"{k} ({v})" for k, v in data["skipped"].items())
            + ".",
            "",
        ]
    goals = targets(rows)
    if goals:
        lines += [
            "### Targets (one Switchboard process)",
            "",
            "| target | measured | |",
            "| --- | --- | --- |",
            *[f"| {t} | {m} | {v} |" for t, m, v in goals],
            "",
        ]
    lines += [
        "### All figures",
        "",
        "TTFT columns: time to first token over 1,000 streams, all started at once (c, e) or "
        "200 a second (s: 250 tokens each, so up to 1,000 open). The p50 and p99 columns are "
        "request latency (a, b, e).",
        "",
        "| scenario | system | req/s | p50 ms | p99 ms | TTFT p50 ms | TTFT p99 ms | dropped "
        "| peak RSS MB | non-2xx |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *[
            f"| {r['scenario']} | {r['system']} | {_fmt(r['rps'], 0)} | {_fmt(r['p50_ms'], 3)} | "
            f"{_fmt(r['p99_ms'], 3)} | {_fmt(r.get('ttft_p50_ms'), 1)} | "
            f"{_fmt(r['ttft_p99_ms'], 1)} | {_fmt(r['dropped'])} | {_fmt(r['rss_mb'], 1)} | "
            f"{_fmt(r.get('errors'))} |"
            for r in sorted(
                rows,
                key=lambda r: (
                    SCENARIOS.index(r["scenario"]) if r["scenario"] in SCENARIOS else 99,
                    ORDER.index(r["system"]) if r["system"] in ORDER else 99,
                ),
            )
        ],
        "",
    ]
    direct_b, raw_b = _get(rows, "b_64_clients", "direct"), _get(rows, "b_64_clients", "raw_proxy")
    if direct_b.get("rps") and raw_b.get("rps"):
        lines += [
            f"The upstream alone serves {_fmt(direct_b['rps'], 0)} req/s at 64 clients, "
            f"{direct_b['rps'] / raw_b['rps']:.0f} × what the minimal Python proxy in front of it "
            "reaches: the upstream is not what the proxies are measured against.",
            "",
        ]
    sb_b, w2 = (
        _get(rows, "b_64_clients", "switchboard"),
        _get(rows, "b_64_clients", "switchboard_w2"),
    )
    if sb_b.get("rps") and w2.get("rps"):
        lines += [
            f"Two workers (`--workers 2`): {_fmt(w2['rps'], 0)} req/s at 64 clients "
            f"({w2['rps'] / sb_b['rps']:.2f} × one worker).",
            "",
        ]
    w2_c, w2_s = (_get(rows, sc, "switchboard_w2") for sc in ("c_1000_streams", "s_spread_streams"))
    d_c, d_s = (_get(rows, sc, "direct") for sc in ("c_1000_streams", "s_spread_streams"))
    if w2_c.get("ttft_p99_ms") and d_c.get("ttft_p99_ms"):
        spread = ""
        if w2_s.get("ttft_p99_ms") and d_s.get("ttft_p99_ms"):
            spread = (
                f"; spread arrivals {_fmt(w2_s['ttft_p99_ms'], 1)} ms "
                f"({w2_s['ttft_p99_ms'] - d_s['ttft_p99_ms']:+.1f} ms)"
            )
        lines += [
            "Streams with two workers (the chart's `--workers auto` on 2 cores; one run each, "
            f"against direct's medians): 1,000 at once TTFT p99 {_fmt(w2_c['ttft_p99_ms'], 1)} ms "
            f"({w2_c['ttft_p99_ms'] - d_c['ttft_p99_ms']:+.1f} ms){spread}.",
            "",
        ]
    ll_e = _get(rows, "e_messages_64_clients", "litellm")
    if ll_e.get("rps"):
        lines += [
            "LiteLLM's own `/v1/messages` (Anthropic Messages in front of the same "
            f"OpenAI-compatible upstream): {_fmt(ll_e['rps'], 0)} req/s at 64 clients.",
            "",
        ]
    lines += [f"![{title}](bench/{name})" for title, name in plots(data)]
    lines += ["", END]
    return "\n".join(lines)


def main() -> None:
    data = json.loads(RESULTS.read_text())
    OUT.mkdir(parents=True, exist_ok=True)
    block = section(data)
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
    if START in text:
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text)
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
