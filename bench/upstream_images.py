"""Images prepared at the edge: bytes sent to a replica and the replica's time to first token,
with and without Fovea's preparation, measured in one run.

A 12 MP (4000x3000) photo-like JPEG (q90) is the client's image. Without preparation, a gateway
forwards it as it came (LiteLLM, the SGLang router); Fovea decodes it once, checks it and
forwards a JPEG (q90) whose shorter side is the model's encoder size. Bytes: the data URL sent
upstream, for Gemma 3 (896 px) and the demo model (224 px). TTFT: one ``llama_cpp.server``
replica serving the demo model (Gemma 3 270M, 224 px projector), streamed, ``max_tokens`` 1,
a new question each time (no prompt cache), median of ``--runs``:

- the original photo sent straight to the replica (what a pass-through gateway makes it do);
- Fovea's prepared image sent straight to the replica (the replica's share with Fovea in front);
- the original photo sent to Fovea in front of the replica (end to end: Fovea's decode included).

    .venv/bin/python bench/upstream_images.py [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.chat_overhead import bench_files, serve_catalog, start_llama_cpp_server  # noqa: E402
from bench.image_decode import LIMITS, data_url, photo_like  # noqa: E402
from fovea.media.encode import jpeg_data_url  # noqa: E402
from fovea.media.images import decode_image_url  # noqa: E402

CATALOG = """
[[deployments]]
name = "gemma-3-demo"
backend = "upstream"
vision = true
image_size = 224
image_tokens = 16
max_output_tokens = 64
[[deployments.branches.latest.replicas]]
url = "{replica}/v1"
model = "gemma-3-demo"
"""


def prepared(url: str, side: int) -> str:
    image = decode_image_url(url, position="image", limits=LIMITS, min_side=side)
    return jpeg_data_url(image.width, image.height, image.rgb, quality=90)


def ttft_s(base: str, headers: dict[str, str], image_url: str, take: int) -> float:
    body = {
        "model": "gemma-3-demo",
        "stream": True,
        "max_tokens": 1,
        "temperature": 0,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": f"What is in this photo? (question {take})"},
                    {"type": "image_url", "image_url": {"url": image_url}},
                ],
            }
        ],
    }
    started = time.perf_counter()
    with httpx.stream(
        "POST", f"{base}/v1/chat/completions", json=body, headers=headers, timeout=300
    ) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: {") and '"content":"' in line.replace(" ", ""):
                return time.perf_counter() - started
    raise RuntimeError("no content in the stream")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    original = data_url(photo_like(), "JPEG", quality=90)
    edge_896, edge_224 = prepared(original, 896), prepared(original, 224)
    print("| image sent upstream | data URL bytes | vs original |\n|---|---:|---:|")
    for name, url in [
        ("original 4000x3000 JPEG q90", original),
        ("Fovea, Gemma 3 (shorter side 896)", edge_896),
        ("Fovea, demo model (shorter side 224)", edge_224),
    ]:
        print(f"| {name} | {len(url):,} | {len(url) / len(original):.1%} |")
    model, mmproj = bench_files()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        replica, chat_url = start_llama_cpp_server(model, mmproj, home)
        replica_base = chat_url.removesuffix("/v1/chat/completions")
        gateway, gateway_base, key = serve_catalog(CATALOG.format(replica=replica_base), home)
        try:
            runs = {
                "original, straight to the replica": (replica_base, {}, original),
                "Fovea's prepared image, straight to the replica": (replica_base, {}, edge_224),
                "original, through Fovea (decode included)": (
                    gateway_base,
                    {"Authorization": f"Bearer {key}"},
                    original,
                ),
            }
            print("\n| request | TTFT median ms | min | max |\n|---|---:|---:|---:|")
            take = 0
            for name, (base, headers, url) in runs.items():
                ttft_s(base, headers, url, take := take + 1)  # warm-up
                times = []
                for _ in range(args.runs):
                    times.append(ttft_s(base, headers, url, take := take + 1) * 1000)
                print(
                    f"| {name} | {statistics.median(times):.0f} | {min(times):.0f} "
                    f"| {max(times):.0f} |"
                )
        finally:
            for process in (gateway, replica):
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()


if __name__ == "__main__":
    main()
