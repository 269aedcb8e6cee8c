"""What operating Fovea costs on its hot path: a cheap authenticated chat request through the
gateway to an upstream that answers at once, with usage records, rate limits and Prometheus
metrics all on, against all off, measured in one run.

"On" is the default server (usage records and metrics are on by default) plus a quota on the
folder (requests and tokens per minute set high enough never to refuse, so every request runs
through both token buckets and carries the x-ratelimit-* headers), and /metrics is scraped
during the load. "Off" is ``FOVEA_USAGE_RECORDS=off FOVEA_METRICS_ENABLED=off`` and no quota.
The two servers alternate, each started fresh, ``--rounds`` times; the report gives the median
of the rounds and every round's numbers. Load: ``wrk``, closed loop, C connections.

    .venv/bin/python bench/operations_cost.py [--rounds 3] [--concurrency 1,8] [--duration 10]
"""

from __future__ import annotations

import argparse
import json
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
    numbers,
    run_wrk,
    server_env,
    start_upstream,
    text_body,
)

MODES = ("off", "on")


def start_fovea(processes: Processes, home: Path, upstream: str, mode: str) -> Target:
    fovea_home = home / f"fovea-{mode}-{time.monotonic_ns()}"
    fovea_home.mkdir()
    catalog = fovea_home / "models.toml"
    catalog.write_text(
        f'[[deployments]]\nname = "{MODEL}"\nbackend = "upstream"\n\n'
        f'[[deployments.branches.latest.replicas]]\nurl = "{upstream}"\nmodel = "{MODEL}"\n'
    )
    port = free_port()
    switches = (
        {} if mode == "on" else {"FOVEA_USAGE_RECORDS": "off", "FOVEA_METRICS_ENABLED": "off"}
    )
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
    if mode == "on":
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
        if limited or mode == "off" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert limited == (mode == "on"), f"{mode}: rate-limit headers {limited}"
    metrics = httpx.get(target.url.replace("/v1/chat/completions", "/metrics"), timeout=10)
    assert (metrics.status_code == 200) == (mode == "on"), f"{mode}: /metrics {metrics.status_code}"


def scrape_every(url: str, seconds: float, stop: threading.Event) -> None:
    """Prometheus' default is one scrape every 15 s; this scrapes every ``seconds``."""
    while not stop.wait(seconds):
        httpx.get(url, timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=numbers, default="1,8")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--scrape-s", type=float, default=1.0)
    args = parser.parse_args()

    results: dict[tuple[str, int], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="ops-cost-") as tmp, Processes() as shared:
        home = Path(tmp)
        body_path = home / "text.json"
        body_path.write_bytes(text_body())
        upstream = start_upstream(shared, home)
        for round_ in range(args.rounds):
            order = MODES if round_ % 2 == 0 else MODES[::-1]
            for mode in order:
                with Processes() as processes:
                    target = start_fovea(processes, home, upstream, mode)
                    check(target, mode)
                    stop = threading.Event()
                    if mode == "on":
                        url = target.url.replace("/v1/chat/completions", "/metrics")
                        threading.Thread(
                            target=scrape_every, args=(url, args.scrape_s, stop), daemon=True
                        ).start()
                    try:
                        run_wrk(target, body_path, max(args.concurrency), args.warmup)
                        for concurrency in args.concurrency:
                            got = run_wrk(target, body_path, concurrency, args.duration)
                            if got.num_errors:
                                raise RuntimeError(
                                    f"{mode} c={concurrency}: {got.num_errors} errors"
                                )
                            results.setdefault((mode, concurrency), []).append(
                                (got.requests_per_s, got.p50_ms)
                            )
                            print(
                                f"round {round_ + 1} {mode} c={concurrency}: "
                                f"{got.requests_per_s:.0f} req/s, p50 {got.p50_ms:.2f} ms",
                                file=sys.stderr,
                            )
                    finally:
                        stop.set()

    print(f"{args.rounds} rounds, {args.duration} s per cell, wrk closed loop; median (rounds)\n")
    print("| concurrency | off: req/s | on: req/s | cost | off: p50 ms | on: p50 ms |")
    print("|---:|---:|---:|---:|---:|---:|")
    for concurrency in args.concurrency:
        off, on = results[("off", concurrency)], results[("on", concurrency)]
        off_rps = statistics.median(r for r, _ in off)
        on_rps = statistics.median(r for r, _ in on)
        cost = 1 - on_rps / off_rps
        print(
            f"| {concurrency} | {off_rps:.0f} ({', '.join(f'{r:.0f}' for r, _ in off)}) "
            f"| {on_rps:.0f} ({', '.join(f'{r:.0f}' for r, _ in on)}) | {cost:+.1%} "
            f"| {statistics.median(p for _, p in off):.2f} "
            f"| {statistics.median(p for _, p in on):.2f} |"
        )


if __name__ == "__main__":
    main()
