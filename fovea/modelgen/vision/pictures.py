"""Deterministic synthetic pictures with captions: coloured shapes on plain backgrounds.

Square pictures are drawn at the tower's input size, so libmtmd's resize is the identity. Any other
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
COMPARE_QUESTIONS = (
    "Compare these two pictures",
    "Compare the two images.",
    "What is the difference between these pictures?",
    "Describe both pictures.",
    "What do these two images show?",
)
# Source shapes (width:height). libmtmd letterboxes non-square ones into the square input.
ASPECTS = ((1, 1), (1, 1), (4, 3), (3, 4), (3, 2), (2, 3))
# The closed world: one large shape near the middle. The radius is a fraction of the short side;
# the centre moves up to JITTER of the short side from the middle. Wider ranges (radius down to
# 0.18, anywhere in the picture) kept shape at chance for 400 classifier steps on this CPU.
RADIUS = (0.3, 0.42)
JITTER = 0.08
SIZE = 224


@dataclass(frozen=True)
class Picture:
    """One scene: a shape of a colour on a background, drawable at any resolution."""

    colour: str
    shape: str
    background: str
    aspect: tuple[int, int]
    radius: float
    offset: tuple[float, float]
    question: str
    image_first: bool

    @property
    def answer(self) -> str:
        return f"A {self.colour} {self.shape}."

    @property
    def image(self) -> Image.Image:
        return self.render(SIZE)

    def render(self, short_side: int) -> Image.Image:
        """The scene with its short side ``short_side`` pixels long."""
        across, down = self.aspect
        unit = short_side / min(across, down)
        width, height = round(across * unit), round(down * unit)
        image = Image.new("RGB", (width, height), BACKGROUNDS[self.background])
        centre = (
            width / 2 + self.offset[0] * short_side,
            height / 2 + self.offset[1] * short_side,
        )
        radius = self.radius * short_side
        draw_shape(ImageDraw.Draw(image), self.shape, centre, radius, COLOURS[self.colour])
        return image


@dataclass(frozen=True)
class Pair:
    """A two-image "compare" prompt."""

    first: Picture
    second: Picture
    question: str
    images_first: bool

    @property
    def answer(self) -> str:
        first, second = self.first, self.second
        return (
            f"The first picture shows a {first.colour} {first.shape}, "
            f"the second a {second.colour} {second.shape}."
        )


def draw_picture(seed: int) -> Picture:
    """One scene with one shape; the same seed always gives the same scene."""
    rng = random.Random(seed)
    return Picture(
        colour=rng.choice(list(COLOURS)),
        shape=rng.choice(SHAPES),
        background=rng.choice(list(BACKGROUNDS)),
        aspect=rng.choice(ASPECTS),
        radius=rng.uniform(*RADIUS),
        offset=(rng.uniform(-JITTER, JITTER), rng.uniform(-JITTER, JITTER)),
        question=rng.choice(QUESTIONS),
        image_first=rng.random() < 0.7,
    )


def draw_pair(seed: int) -> Pair:
    rng = random.Random(seed)
    return Pair(
        draw_picture(rng.getrandbits(48)),
        draw_picture(rng.getrandbits(48)),
        rng.choice(COMPARE_QUESTIONS),
        images_first=rng.random() < 0.4,
    )


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


def to_model_input(image: Image.Image, size: int = SIZE) -> Image.Image:
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
