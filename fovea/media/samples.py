"""Draw the sample pictures Fovea ships in ``examples/images`` (public domain, CC0).

``red-circle.png`` and ``blue-star.png`` lie inside the closed world the demo model's vision
tower was trained on (``fovea.modelgen.vision.pictures``): the reference client sends them.
``sunset.png`` and ``house.png`` are scenes outside it. Run ``python -m fovea.media.samples
[directory]`` to write them again; the drawing is deterministic, so the files only change when
this code does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fovea.modelgen.vision.pictures import Picture

__all__ = ["CLOSED_WORLD", "draw_house", "draw_sunset", "write_samples"]

WIDTH, HEIGHT = 640, 480
HORIZON = 300
Colour = tuple[int, int, int]


def _vertical_gradient(top: Colour, bottom: Colour, height: int) -> Image.Image:
    steps = np.linspace(0.0, 1.0, height)[:, None, None]
    rows = (1 - steps) * np.array(top) + steps * np.array(bottom)
    return Image.fromarray(np.repeat(rows, WIDTH, axis=1).round().astype(np.uint8))


def draw_sunset() -> Image.Image:
    """A red sun setting over a dark blue sea under an orange sky."""
    picture = Image.new("RGB", (WIDTH, HEIGHT))
    picture.paste(_vertical_gradient((40, 60, 150), (250, 150, 60), HORIZON), (0, 0))
    sea = _vertical_gradient((20, 40, 110), (5, 15, 50), HEIGHT - HORIZON)
    draw = ImageDraw.Draw(picture)
    draw.ellipse((240, HORIZON - 90, 400, HORIZON + 70), fill=(220, 30, 20))
    picture.paste(sea, (0, HORIZON))
    for row, half_width in enumerate((70, 55, 42, 30, 20, 12)):
        y = HORIZON + 12 + row * 22
        draw.rectangle((320 - half_width, y, 320 + half_width, y + 5), fill=(200, 70, 40))
    for x, y in ((120, 110), (160, 80), (470, 130)):
        draw.line((x - 14, y - 6, x, y, x + 14, y - 6), fill=(30, 20, 40), width=3)
    return picture


def draw_house() -> Image.Image:
    """A house with a red roof on a green-checkered lawn under a blue sky."""
    picture = Image.new("RGB", (WIDTH, HEIGHT), (110, 170, 235))
    draw = ImageDraw.Draw(picture)
    tile = 40
    for top in range(HORIZON, HEIGHT, tile):
        for left in range(0, WIDTH, tile):
            light = (left // tile + top // tile) % 2 == 0
            draw.rectangle(
                (left, top, left + tile - 1, top + tile - 1),
                fill=(70, 170, 60) if light else (30, 110, 40),
            )
    draw.ellipse((40, 30, 120, 110), fill=(255, 220, 60))
    draw.rectangle((400, 100, 430, 170), fill=(120, 60, 40))  # chimney
    draw.rectangle((220, 190, 460, 360), fill=(240, 220, 170), outline=(90, 60, 30), width=3)
    draw.polygon([(200, 195), (340, 80), (480, 195)], fill=(190, 30, 30), outline=(90, 20, 20))
    draw.rectangle((315, 270, 365, 360), fill=(110, 60, 30))  # door
    for left in (245, 395):
        draw.rectangle((left, 220, left + 45, 265), fill=(170, 220, 255), outline=(255, 255, 255))
    return picture


def _closed_world(colour: str, shape: str, background: str) -> Picture:
    return Picture(
        colour=colour,
        shape=shape,
        background=background,
        aspect=(4, 3),
        radius=0.36,
        offset=(0.0, 0.0),
        question="",
        image_first=True,
    )


# What the demo model can name, by file name: 640 x 480, one shape in the middle.
CLOSED_WORLD = {
    "red-circle.png": _closed_world("red", "circle", "light grey"),
    "blue-star.png": _closed_world("blue", "star", "beige"),
}


def write_samples(directory: Path) -> list[Path]:
    """Write every sample picture into ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    pictures = [(name, scene.render(HEIGHT)) for name, scene in CLOSED_WORLD.items()]
    for name, picture in [*pictures, ("sunset.png", draw_sunset()), ("house.png", draw_house())]:
        path = directory / name
        picture.save(path, "PNG", optimize=True)
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("examples/images")
    for path in write_samples(target):
        print(f"{path} ({path.stat().st_size // 1024} KiB)")
