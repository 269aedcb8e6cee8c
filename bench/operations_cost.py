"""What operating Fovea costs on its hot path: a cheap authenticated chat request through the
gateway to an upstream that answers at once, with usage records, rate limits and Prometheus
metrics all on, against all off, measured in one run.

"On" is the default server (usage records and metrics are on by default) plus a quota on the
folder (requests and tokens per minute set high enough never to refuse, so every request runs
through both token buckets and carries the x-ratelimit-* headers), and /metrics is scraped
during the load. "Off" is ``FOVEA_USAGE_RECORDS=off FOVEA_METRICS_ENABLED=off`` and no quota.
The servers run at once and take turns in short cells, ``--rounds`` times (the machine's
drift falls on all alike); the report gives medians, and the server's CPU time per request.
Load: ``wrk``, closed loop, C connections.

    .venv/bin/python bench/operations_cost.py [--rounds 10] [--concurrency 1,8] [--duration 3]
        [--modes off,on,usage,quota,metrics]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gateway import (
    MODEL,
    Processes,
    Target,
    free_port,
    names,
    numbers,
    run_wrk,
    server_env,
    start_upstream,
    text_body,
)

# What each mode turns on: usage records, a folder quota, metrics (and a scrape each second).
MODES: dict[str, frozenset[str]] = {
    "off": frozenset(),
    "on": frozenset({"usage", "quota", "metrics"}),
    "usage": frozenset({"usage"}),
    "quota": frozenset({"quota"}),
    "metrics": frozenset({"metrics"}),
}


def server_pid(url: str) -> int:
    """The process listening on ``url``'s port (``ss`` from iproute2)."""
    port = url.split(":")[2].split("/")[0]
    listed = subprocess.run(
        ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    found = re.search(r"pid=(\d+)", listed)
    if found is None:
        raise RuntimeError(f"nothing listens on port {port}: {listed!r}")
    return int(found[1])


def cpu_s(pid: int) -> float:
    """User and system CPU seconds of ``pid``, all its threads (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_fovea(processes: Processes, home: Path, upstream: str, mode: str) -> Target:
    fovea_home = home / f"fovea-{mode}-{time.monotonic_ns()}"
    fovea_home.mkdir()
    catalog = fovea_home / "models.toml"
    catalog.write_text(
        f'[[deployments]]\nname = "{MODEL}"\nbackend = "upstream"\n\n'
        f'[[deployments.branches.latest.replicas]]\nurl = "{upstream}"\nmodel = "{MODEL}"\n'
    )
    port = free_port()
    parts = MODES[mode]
    switches = {
        "FOVEA_USAGE_RECORDS": "on" if "usage" in parts else "off",
        "FOVEA_METRICS_ENABLED": "on" if "metrics" in parts else "off",
    }
    env = server_env(
        FOVEA_HOME=str(fovea_home),
        FOVEA_CATALOG=str(catalog),
        FOVEA_PORT=str(port),
        FOVEA_LOG_LEVEL="warning",
        FOVEA_MAX_CONCURRENT_GENERATIONS_PER_FOLDER="64",
        **switches,
    )
    cli = [sys.executable, "-m", "fovea.cli.main"]
    made = subprocess.run(
        [*cli, "iam", "bootstrap", "--json"], env=env, capture_output=True, check=True
    )
    bootstrap = json.loads(made.stdout)
    if "quota" in parts:
        quota = ["quota", "set", "--folder", bootstrap["folder_id"]]
        limits = ["--rpm", "100000000", "--tpm", "1000000000"]
        subprocess.run([*cli, *quota, *limits], env=env, capture_output=True, check=True)
    base = f"http://127.0.0.1:{port}"
    processes.start([*cli, "serve"], env, f"{base}/readyz", home / f"fovea-{mode}.log")
    headers = {"Authorization": f"Bearer {bootstrap['api_key']}"}
    return Target(f"Fovea, {mode}", f"{base}/v1/chat/completions", headers)


def check(target: Target, mode: str) -> None:
    """The switches did what they say: headers and metrics on, or neither."""
    body = json.loads(text_body())
    deadline = time.monotonic() + 10  # the quota is read within a second of the start
    while True:
        response = httpx.post(target.url, json=body, headers=target.headers, timeout=10)
        response.raise_for_status()
        limited = "x-ratelimit-limit-requests" in response.headers
        if limited or "quota" not in MODES[mode] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert limited == ("quota" in MODES[mode]), f"{mode}: rate-limit headers {limited}"
    metrics = httpx.get(target.url.replace("/v1/chat/completions", "/metrics"), timeout=10)
    scraped = metrics.status_code == 200
    assert scraped == ("metrics" in MODES[mode]), f"{mode}: /metrics {metrics.status_code}"


def scrape_every(url: str, seconds: float, stop: threading.Event) -> None:
    """Prometheus' default is one scrape every 15 s; this scrapes every ``seconds``."""
    while not stop.wait(seconds):
        httpx.get(url, timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", type=names(tuple(MODES)), default="off,on")
    parser.add_argument("--concurrency", type=numbers, default="1,8")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--scrape-s", type=float, default=1.0)
    args = parser.parse_args()

    # (mode, concurrency) -> [(requests/s, p50 ms, server CPU µs per request)] by round
    results: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="ops-cost-") as tmp, Processes() as shared:
        home = Path(tmp)
        body_path = home / "text.json"
        body_path.write_bytes(text_body())
        upstream = start_upstream(shared, home)
        # Every mode's server runs at once (idle but for the one loaded), so the modes take
        # turns in short cells and the machine's drift falls on all of them alike.
        servers = {mode: start_fovea(shared, home, upstream, mode) for mode in args.modes}
        pids = {}
        for mode, target in servers.items():
            check(target, mode)
            pids[mode] = server_pid(target.url)
            run_wrk(target, body_path, max(args.concurrency), args.warmup)
        for round_ in range(args.rounds):
            order = args.modes if round_ % 2 == 0 else args.modes[::-1]
            for concurrency in args.concurrency:
                for mode in order:
                    target = servers[mode]
                    stop = threading.Event()
                    if "metrics" in MODES[mode]:
                        url = target.url.replace("/v1/chat/completions", "/metrics")
                        threading.Thread(
                            target=scrape_every, args=(url, args.scrape_s, stop), daemon=True
                        ).start()
                    try:
                        before = cpu_s(pids[mode])
                        got = run_wrk(target, body_path, concurrency, args.duration)
                        cpu_us = (cpu_s(pids[mode]) - before) / got.num_requests * 1e6
                    finally:
                        stop.set()
                    if got.num_errors:
                        raise RuntimeError(f"{mode} c={concurrency}: {got.num_errors} errors")
                    results.setdefault((mode, concurrency), []).append(
                        (got.requests_per_s, got.p50_ms, cpu_us)
                    )
                    print(
                        f"round {round_ + 1} {mode} c={concurrency}: "
                        f"{got.requests_per_s:.0f} req/s, p50 {got.p50_ms:.2f} ms, "
                        f"server CPU {cpu_us:.0f} µs/request",
                        file=sys.stderr,
                    )

    print(f"{args.rounds} rounds, {args.duration} s per cell, wrk closed loop; median (rounds)\n")
    print(
        "| concurrency | mode | req/s (rounds) | vs off | p50 ms | server CPU µs/request | vs off |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|")
    for concurrency in args.concurrency:
        base = results.get(("off", concurrency))
        for mode in args.modes:
            rounds = results[(mode, concurrency)]
            rps = statistics.median(r for r, _, _ in rounds)
            p50 = statistics.median(p for _, p, _ in rounds)
            cpu = statistics.median(c for _, _, c in rounds)
            listed = ", ".join(f"{r:.0f}" for r, _, _ in rounds)
            versus = ["", ""]
            if base is not None and mode != "off":
                base_rps = statistics.median(r for r, _, _ in base)
                base_cpu = statistics.median(c for _, _, c in base)
                versus = [f"{rps / base_rps - 1:+.1%}", f"{cpu / base_cpu - 1:+.1%}"]
            print(
                f"| {concurrency} | {mode} | {rps:.0f} ({listed}) | {versus[0]} | {p50:.2f} "
                f"| {cpu:.0f} | {versus[1]} |"
            )


if __name__ == "__main__":
    main()
