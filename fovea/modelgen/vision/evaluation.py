"""Held-out accuracy: answers parsed into colour and shape, scored against the picture."""

from __future__ import annotations

from dataclasses import dataclass

from fovea.modelgen.vision.pictures import COLOURS, SHAPES, Picture, draw_picture

HELD_OUT_SEED = 10_000_000


def held_out(count: int) -> list[Picture]:
    return [draw_picture(HELD_OUT_SEED + index) for index in range(count)]


@dataclass(frozen=True)
class Accuracy:
    colour: float
    shape: float
    both: float
    exact: float

    def as_dict(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}_{k}": round(v, 4) for k, v in vars(self).items()}


def score(pictures: list[Picture], answers: list[str]) -> Accuracy:
    colour = shape = both = exact = 0
    for picture, answer in zip(pictures, answers, strict=True):
        words = answer.lower().replace(".", " ").split()
        said_colour = next((w for w in words if w in COLOURS), None)
        said_shape = next((w for w in words if w in SHAPES), None)
        colour += said_colour == picture.colour
        shape += said_shape == picture.shape
        both += said_colour == picture.colour and said_shape == picture.shape
        exact += answer.strip() == picture.answer
    n = max(len(pictures), 1)
    return Accuracy(colour / n, shape / n, both / n, exact / n)
