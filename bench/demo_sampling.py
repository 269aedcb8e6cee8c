"""How often the demo model names what it sees, by sampling temperature, through a real server.

The reference client (examples/compare_images.py) sends no temperature, so it samples at the
OpenAI default of 1.0 unless the deployment sets its own default. For each temperature: the
reference client's two-picture compare ``--runs`` times, and ``--pictures`` held-out single
pictures once each; counted as right when the answer names the colours and shapes, in order.

    .venv/bin/python bench/demo_sampling.py [--runs 40] [--pictures 40] [--temperatures 1,0.3,0]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fovea.media.samples import CLOSED_WORLD  # noqa: E402
from fovea.modelgen.vision.evaluation import held_out, named  # noqa: E402
from fovea.modelgen.vision.pictures import Pair, Picture  # noqa: E402

IMAGES = ROOT / "examples" / "images"
PORT = 8197


def _url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _png(picture: Picture) -> bytes:
    out = io.BytesIO()
    picture.image.save(out, "PNG")
    return out.getvalue()


def start_server(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``fovea serve --bootstrap`` on the shipped catalog; returns the process and its key."""
    log = home / "server.log"
    env = {**os.environ, "FOVEA_HOME": str(home), "FOVEA_PORT": str(PORT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "fovea.cli.main", "serve", "--bootstrap"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    for _ in range(600):
        key = re.search(r"api key\s+=\s+(\S+)", log.read_text(errors="replace"))
        try:
            ready = httpx.get(f"http://127.0.0.1:{PORT}/readyz").status_code == 200
        except httpx.HTTPError:
            ready = False
        if key and ready:
            return process, key.group(1)
        time.sleep(0.5)
    process.kill()
    raise SystemExit(f"the server did not start: {log}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--pictures", type=int, default=40)
    parser.add_argument("--temperatures", default="1,0.3,0")
    args = parser.parse_args()
    temperatures = [float(t) for t in args.temperatures.split(",")]
    pair = [(IMAGES / name).read_bytes() for name in CLOSED_WORLD]
    expected_pair = [(p.colour, p.shape) for p in CLOSED_WORLD.values()]
    first, second = CLOSED_WORLD.values()
    pair_answer = Pair(first, second, question="", images_first=False).answer
    pictures = held_out(args.pictures)
    with tempfile.TemporaryDirectory() as home_dir:
        process, key = start_server(Path(home_dir))
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{PORT}/v1",
            headers={"Authorization": f"Bearer {key}"},
            timeout=120,
        )

        def ask(question: str, images: list[bytes], temperature: float | None) -> str:
            content: list[dict[str, object]] = [{"type": "text", "text": question}]
            content += [{"type": "image_url", "image_url": {"url": _url(i)}} for i in images]
            body: dict[str, object] = {
                "model": "gemma-3-demo",
                "messages": [{"role": "user", "content": content}],
            }
            if temperature is not None:
                body["temperature"] = temperature
            response = client.post("/chat/completions", json=body)
            response.raise_for_status()
            return str(response.json()["choices"][0]["message"]["content"])

        try:
            for temperature in [None, *temperatures]:
                compares = [
                    ask("Compare these two pictures", pair, temperature) for _ in range(args.runs)
                ]
                singles = [ask(p.question, [_png(p)], temperature) for p in pictures]
                record = {
                    "temperature": "deployment default" if temperature is None else temperature,
                    "compare_right": sum(named(a) == expected_pair for a in compares),
                    "compare_exact": sum(a.strip() == pair_answer for a in compares),
                    "compares": len(compares),
                    "single_right": sum(
                        named(a)[:1] == [(p.colour, p.shape)]
                        for p, a in zip(pictures, singles, strict=True)
                    ),
                    "single_exact": sum(
                        a.strip() == p.answer for p, a in zip(pictures, singles, strict=True)
                    ),
                    "singles": len(singles),
                    "wrong_compare_example": next(
                        (a for a in compares if named(a) != expected_pair), None
                    ),
                }
                print(json.dumps(record, ensure_ascii=False), flush=True)
        finally:
            process.terminate()
            process.wait(30)


if __name__ == "__main__":
    main()
