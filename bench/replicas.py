"""Several replicas: what a second gateway replica buys, and what PostgreSQL costs.

1. Lines per minute of one 200-line batch, run by one replica and by two replicas that share
   one PostgreSQL, one Redis and one files directory, in front of one upstream pool. The
   upstream is ``bench/instant_upstream.py`` (answers at once: the gateways and their batch
   runners are what is measured) or, with ``--upstream llama``, ``llama_cpp.server`` on the
   demo model (then the engine is the bottleneck, and a second gateway cannot help).
2. Authenticated chat requests per second (``wrk``, closed loop) of one replica on SQLite (alone,
   and with quotas in Redis), on PostgreSQL with Redis, and on PostgreSQL alone (quotas counted
   in the database), in front of the instant upstream, beside LiteLLM's proxy (master key, no
   database: its lightest path) when ``.bench/litellm-venv`` exists; the servers run at once
   and take turns in short cells.

PostgreSQL and Redis are private servers started by the test suite's helpers (``make test``
installs both). Runs ``--rounds`` times; the report gives every run and the medians.

    .venv/bin/python bench/replicas.py [--lines 200] [--rounds 3] [--concurrency 8]
        [--duration 5] [--upstream instant|llama] [--only batch|rps]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openai

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.gateway import (  # noqa: E402
    LITELLM,
    MODEL,
    Processes,
    Target,
    free_port,
    run_wrk,
    server_env,
    start_litellm,
    start_upstream,
    text_body,
)
from tests.postgres import start_server as start_postgres  # noqa: E402
from tests.redis import start_server as start_redis  # noqa: E402

CLI = [sys.executable, "-m", "fovea.cli.main"]


def catalog(home: Path, upstream: str) -> Path:
    path = home / "models.toml"
    path.write_text(
        f'[[deployments]]\nname = "{MODEL}"\nbackend = "upstream"\ncontext_length = 4096\n'
        "max_images = 8\nmax_output_tokens = 1024\n\n[deployments.upstream]\n"
        "probe_interval_s = 5.0\n\n"
        f'[[deployments.branches.latest.replicas]]\nurl = "{upstream}"\nmodel = "{MODEL}"\n'
    )
    return path


def bootstrap(env: dict[str, str]) -> str:
    """A key that may run chat and batches in the default folder."""
    made = subprocess.run([*CLI, "iam", "bootstrap", "--json"], env=env, capture_output=True)
    if made.returncode != 0:
        raise RuntimeError(f"fovea iam bootstrap failed:\n{made.stderr.decode()[-3000:]}")
    answer = json.loads(made.stdout)
    grant = [*CLI, "iam", "role", "grant", "ai.editor", "--folder", "default"]
    granted = subprocess.run(
        [*grant, "--sa", answer["service_account_id"]], env=env, capture_output=True
    )
    if granted.returncode != 0:
        raise RuntimeError(f"fovea iam grant failed:\n{granted.stderr.decode()[-3000:]}")
    return str(answer["api_key"])


def start_replica(processes: Processes, home: Path, upstream: str, extra: dict[str, str]) -> str:
    """A ``fovea serve`` with its own home on the shared state in ``extra``; its base URL."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = server_env(
        FOVEA_HOME=str(home),
        FOVEA_CATALOG=str(catalog(home, upstream)),
        FOVEA_PORT=str(port),
        FOVEA_LOG_LEVEL="warning",
        FOVEA_MAX_CONCURRENT_GENERATIONS_PER_FOLDER="64",
        **extra,
    )
    base = f"http://127.0.0.1:{port}"
    processes.start([*CLI, "serve"], env, f"{base}/readyz", home / "fovea.log")
    return base


def batch_input(lines: int) -> bytes:
    rows = []
    for i in range(lines):
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": f"Item {i}: the next number is"}],
            "max_tokens": 3,
            "temperature": 0,
        }
        rows.append(
            {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}
        )
    return "\n".join(json.dumps(row) for row in rows).encode()


def lines_per_minute(api: openai.OpenAI, lines: int) -> float:
    """Submit a batch and time it from creation to completed (as the Batches API says)."""
    file_id = api.files.create(
        file=("in.jsonl", io.BytesIO(batch_input(lines))), purpose="batch"
    ).id
    started = time.monotonic()
    batch = api.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    while batch.status not in ("completed", "failed", "cancelled", "expired"):
        time.sleep(0.1)
        batch = api.batches.retrieve(batch.id)
    elapsed = time.monotonic() - started
    counts = batch.request_counts
    if batch.status != "completed" or counts is None or counts.completed != lines:
        raise RuntimeError(f"the batch did not complete cleanly: {batch}")
    return lines / elapsed * 60


def start_pool(processes: Processes, work: Path, kind: str) -> str:
    if kind == "instant":
        return start_upstream(processes, work)
    from bench.chat_overhead import bench_files, start_llama_cpp_server

    process, chat_url = start_llama_cpp_server(*bench_files(), work)
    processes.callback(process.wait, 30)  # runs second: the stack unwinds last in, first out
    processes.callback(process.terminate)
    return chat_url.removesuffix("/chat/completions")


def bench_batch(args: argparse.Namespace, work: Path) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"1 replica": [], "2 replicas": []}
    postgres, redis = start_postgres(), start_redis()
    try:
        with Processes() as processes:
            upstream = start_pool(processes, work, args.upstream)
            for run in range(args.rounds):
                for name, count in (("1 replica", 1), ("2 replicas", 2)):
                    redis.flush()
                    shared = {
                        "FOVEA_DATABASE_URL": postgres.url(postgres.create_database()),
                        "FOVEA_REDIS_URL": redis.url(),
                        "FOVEA_FILES_DIR": str(work / f"files-{run}-{count}"),
                    }
                    key = bootstrap(server_env(FOVEA_HOME=str(work / "cli"), **shared))
                    with Processes() as replicas:
                        bases = [
                            start_replica(replicas, work / f"r{run}-{count}-{n}", upstream, shared)
                            for n in range(count)
                        ]
                        api = openai.OpenAI(api_key=key, base_url=f"{bases[0]}/v1", max_retries=0)
                        results[name].append(lines_per_minute(api, args.lines))
                    print(f"  batch run {run + 1}: {name}: {results[name][-1]:.0f} lines/min")
    finally:
        postgres.stop()
        redis.stop()
    return results


def bench_rps(args: argparse.Namespace, work: Path) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}
    postgres, redis = start_postgres(), start_redis()
    body = work / "body.json"
    body.write_bytes(text_body())
    try:
        with Processes() as processes:
            upstream = start_upstream(processes, work)
            setups = {
                "SQLite": {},
                "SQLite + Redis (quotas in Redis)": {"FOVEA_REDIS_URL": redis.url(1)},
                "PostgreSQL + Redis": {
                    "FOVEA_DATABASE_URL": postgres.url(postgres.create_database()),
                    "FOVEA_REDIS_URL": redis.url(),
                },
                "PostgreSQL (quotas in the database)": {
                    "FOVEA_DATABASE_URL": postgres.url(postgres.create_database()),
                },
            }
            targets: dict[str, Target] = {}
            for n, (name, extra) in enumerate(setups.items()):
                home = work / f"rps-{n}"
                shared = {**extra, "FOVEA_FILES_DIR": str(home / "files")}
                key = bootstrap(server_env(FOVEA_HOME=str(home), **shared))
                base = start_replica(processes, home, upstream, shared)
                targets[name] = Target(
                    name, f"{base}/v1/chat/completions", {"Authorization": f"Bearer {key}"}
                )
                results[name] = []
            if LITELLM.exists():  # the peer: LiteLLM's proxy on its lightest path (master key)
                (work / "litellm").mkdir()
                peer = start_litellm(processes, work / "litellm", upstream, 1)
                targets[peer.system] = peer
                results[peer.system] = []
            for target in targets.values():  # warm up every server once
                run_wrk(target, body, args.concurrency, 2)
            for run in range(args.rounds):
                for name, target in targets.items():
                    measured = run_wrk(target, body, args.concurrency, args.duration)
                    if measured.num_errors:
                        raise RuntimeError(f"{name}: {measured.num_errors} errors")
                    results[name].append(measured.requests_per_s)
                    print(f"  rps run {run + 1}: {name}: {measured.requests_per_s:.0f} req/s")
    finally:
        postgres.stop()
        redis.stop()
    return results


def report(title: str, unit: str, results: dict[str, list[float]]) -> None:
    print(f"\n{title}")
    print(f"| setup | median {unit} | runs |")
    print("|---|---|---|")
    for name, values in results.items():
        runs = ", ".join(f"{v:.0f}" for v in values)
        print(f"| {name} | {statistics.median(values):.0f} | {runs} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--upstream", choices=["instant", "llama"], default="instant")
    parser.add_argument("--only", choices=["batch", "rps"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fovea-bench-replicas-") as scratch:
        work = Path(scratch)
        if args.only in (None, "batch"):
            results = bench_batch(args, work)
            report(f"{args.lines}-line batch, {args.upstream} upstream", "lines/min", results)
        if args.only in (None, "rps"):
            results = bench_rps(args, work)
            report(f"authenticated chat, c={args.concurrency}", "req/s", results)


if __name__ == "__main__":
    main()
