"""Image intake speed: Fovea's decode to model size against the naive Pillow path.

For a 12 MP (4000x3000) photo-like JPEG and the same picture as PNG, each sent as a base64 data
URL, times in one process the median of ``--runs``:

- naive: ``base64.b64decode`` + ``Image.open(...).convert("RGB")`` (every pixel) +
  ``resize((896, 896))`` + ``tobytes()``;
- Fovea, all pixels: ``decode_image_url(url, ...)`` (checks, EXIF orientation, RGB, SHA-256);
- Fovea, ``min_side=896``: the same, decoded only as large as Gemma 3 needs (shorter side 896);
- Fovea, ``min_side=896`` then squashed to 896x896, to end where the naive path ends.

Then base64 alone: 16 MiB of it (12 MiB of random bytes), canonical, wrapped at 76 columns and
URL-safe unpadded, through Fovea's ``read_image_bytes`` (pybase64) and through the same rules on
the stdlib (``binascii.a2b_base64``, Fovea's path before issue 3).

    .venv/bin/python bench/image_decode.py [--runs 15]
"""

from __future__ import annotations

import argparse
import base64
import binascii
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fovea.media.data_url import read_image_bytes  # noqa: E402
from fovea.media.images import ImageLimits, decode_image_url  # noqa: E402

SIDE = 896
WIDTH, HEIGHT = 4000, 3000
LIMITS = ImageLimits(
    max_image_bytes=64 * 1024 * 1024, max_image_pixels=50_000_000, max_images_per_request=1
)


def photo_like(width: int = WIDTH, height: int = HEIGHT, seed: int = 3) -> Image.Image:
    """Smooth gradients and waves, shapes, then sensor-like noise: compresses like a photo."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    x /= width
    y /= height
    red = 90 + 110 * x + 30 * np.sin(9 * y + 3 * x)
    green = 70 + 120 * y + 25 * np.cos(7 * x * y + 2)
    blue = 160 - 90 * x * y + 30 * np.sin(13 * x - 5 * y)
    base = np.stack([red, green, blue], axis=-1)
    picture = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for _ in range(60):
        left, top = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(40, 700))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((left, top, left + size, top + size * 2 // 3), fill=colour)
    noisy = np.asarray(picture, dtype=np.int16) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def data_url(picture: Image.Image, fmt: str, **options: object) -> str:
    buffer = io.BytesIO()
    picture.save(buffer, fmt, **options)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()


def naive(url: str) -> bytes:
    encoded = base64.b64decode(url.partition(",")[2])
    with Image.open(io.BytesIO(encoded)) as image:
        return image.convert("RGB").resize((SIDE, SIDE)).tobytes()


def fovea(url: str, min_side: int | None) -> bytes:
    return decode_image_url(url, position="bench", limits=LIMITS, min_side=min_side).rgb


def fovea_squashed(url: str) -> bytes:
    image = decode_image_url(url, position="bench", limits=LIMITS, min_side=SIDE)
    rgb = Image.frombytes("RGB", (image.width, image.height), image.rgb)
    return rgb.resize((SIDE, SIDE)).tobytes()


def stdlib_base64(text: str) -> bytes:
    """Fovea's base64 rules on the stdlib alone: its path before pybase64."""
    data = text.encode("ascii").translate(bytes.maketrans(b"-_", b"+/"), b" \t\r\n\f\v")
    data = data.rstrip(b"=")
    return binascii.a2b_base64(data + b"=" * (-len(data) % 4), strict_mode=True)


def fovea_base64(text: str) -> bytes:
    return read_image_bytes(text, position="bench", max_bytes=64 * 1024 * 1024)


def median_ms(run: Callable[[], object], runs: int) -> float:
    run()  # warm up: first-call imports and allocations
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def decode_table(runs: int) -> None:
    picture = photo_like()
    urls = {
        "JPEG q90": data_url(picture, "JPEG", quality=90),
        "PNG": data_url(picture, "PNG"),
    }
    paths: dict[str, Callable[[str], object]] = {
        "naive: b64decode + full decode + resize to 896x896": naive,
        "Fovea, all pixels (no min_side)": lambda url: fovea(url, None),
        "**Fovea, min_side=896**": lambda url: fovea(url, SIDE),
        "Fovea, min_side=896, then squashed to 896x896": fovea_squashed,
    }
    print(f"{WIDTH}x{HEIGHT} photo-like picture, medians of {runs} runs\n")
    print("| image | base64 MB | path | ms | speed-up vs naive |")
    print("|---|---:|---|---:|---:|")
    for name, url in urls.items():
        naive_ms = 0.0
        for label, path in paths.items():
            ms = median_ms(lambda path=path, url=url: path(url), runs)
            naive_ms = naive_ms or ms
            print(f"| {name} | {len(url) / 1e6:.1f} | {label} | {ms:.0f} | {naive_ms / ms:.1f}x |")


def base64_table(runs: int) -> None:
    raw = os.urandom(12 * 1024 * 1024)
    texts = {
        "canonical": base64.b64encode(raw).decode(),
        "wrapped at 76": base64.encodebytes(raw).decode(),
        "URL-safe, unpadded": base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }
    print(f"\n16 MiB of base64, medians of {runs} runs\n")
    print("| base64 | stdlib (binascii) ms | Fovea (pybase64) ms | speed-up |")
    print("|---|---:|---:|---:|")
    for name, text in texts.items():
        assert fovea_base64(text) == stdlib_base64(text) == raw
        stdlib_ms = median_ms(lambda text=text: stdlib_base64(text), runs)
        fovea_ms = median_ms(lambda text=text: fovea_base64(text), runs)
        print(f"| {name} | {stdlib_ms:.1f} | {fovea_ms:.1f} | {stdlib_ms / fovea_ms:.0f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    decode_table(args.runs)
    base64_table(args.runs)


if __name__ == "__main__":
    main()
