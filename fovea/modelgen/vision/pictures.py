"""Deterministic synthetic pictures with captions: coloured shapes on plain backgrounds.

Pictures are drawn at the tower's input size, so libmtmd's resize is the identity. Any other
source is letterboxed by libmtmd for Gemma 3 (measured: aspect kept, bilinear, centred on black);
``to_model_input`` mirrors that (cosine 1.0000 against libmtmd's embeddings).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "orange": (245, 140, 20),
    "purple": (140, 40, 180),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
}
SHAPES = ("circle", "square", "triangle", "star", "cross")
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "grey": (128, 128, 128),
    "light grey": (200, 200, 200),
    "dark grey": (70, 70, 70),
    "beige": (225, 210, 180),
}
QUESTIONS = (
    "What is in this picture?",
    "Describe the image.",
    "What do you see?",
    "What shape is shown, and what colour is it?",
    "Describe this picture in a few words.",
)


@dataclass(frozen=True)
class Picture:
    image: Image.Image
    colour: str
    shape: str
    question: str

    @property
    def answer(self) -> str:
        return f"A {self.colour} {self.shape}."


def draw_picture(seed: int, size: int = 224) -> Picture:
    """One picture with one shape; the same seed always gives the same picture."""
    rng = random.Random(seed)
    colour = rng.choice(list(COLOURS))
    shape = rng.choice(SHAPES)
    background = rng.choice(list(BACKGROUNDS.values()))
    image = Image.new("RGB", (size, size), background)
    radius = rng.uniform(0.18, 0.38) * size
    centre = (
        rng.uniform(radius, size - radius),
        rng.uniform(radius, size - radius),
    )
    draw_shape(ImageDraw.Draw(image), shape, centre, radius, COLOURS[colour])
    return Picture(image, colour, shape, rng.choice(QUESTIONS))


def draw_shape(
    draw: ImageDraw.ImageDraw,
    shape: str,
    centre: tuple[float, float],
    radius: float,
    fill: tuple[int, int, int],
) -> None:
    x, y = centre
    if shape == "circle":
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill)
    elif shape == "square":
        side = radius * 0.85
        draw.rectangle((x - side, y - side, x + side, y + side), fill=fill)
    elif shape == "triangle":
        draw.polygon(_polygon(centre, radius, 3, 0.0), fill=fill)
    elif shape == "star":
        outer = _polygon(centre, radius, 5, 0.0)
        inner = _polygon(centre, radius * 0.4, 5, math.pi / 5)
        draw.polygon([p for pair in zip(outer, inner, strict=True) for p in pair], fill=fill)
    elif shape == "cross":
        arm = radius * 0.3
        draw.rectangle((x - radius, y - arm, x + radius, y + arm), fill=fill)
        draw.rectangle((x - arm, y - radius, x + arm, y + radius), fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _polygon(
    centre: tuple[float, float], radius: float, corners: int, offset: float
) -> list[tuple[float, float]]:
    x, y = centre
    return [
        (
            x + radius * math.sin(offset + 2 * math.pi * k / corners),
            y - radius * math.cos(offset + 2 * math.pi * k / corners),
        )
        for k in range(corners)
    ]


def to_model_input(image: Image.Image, size: int = 224) -> Image.Image:
    """Letterbox to ``size`` x ``size`` as libmtmd preprocesses for Gemma 3: scale to fit
    (bilinear), centre on black."""
    image = image.convert("RGB")
    if image.size == (size, size):
        return image
    scale = size / max(image.size)
    width, height = round(image.width * scale), round(image.height * scale)
    canvas = Image.new("RGB", (size, size), (0, 0, 0))
    resized = image.resize((width, height), Image.Resampling.BILINEAR)
    canvas.paste(resized, ((size - width) // 2, (size - height) // 2))
    return canvas
