"""Held-out accuracy: answers parsed into colour and shape, scored against the picture."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fovea.modelgen.vision.pictures import COLOURS, SHAPES, Pair, Picture, draw_pair, draw_picture

HELD_OUT_SEED = 10_000_000
HELD_OUT_PAIR_SEED = 11_000_000


def held_out(count: int) -> list[Picture]:
    return [draw_picture(HELD_OUT_SEED + index) for index in range(count)]


def held_out_pairs(count: int) -> list[Pair]:
    return [draw_pair(HELD_OUT_PAIR_SEED + index) for index in range(count)]


def named(answer: str) -> list[tuple[str | None, str | None]]:
    """The (colour, shape) named in each clause of an answer, in order."""
    clauses = re.split(r"[,;.]| and ", answer.lower())
    found = []
    for clause in clauses:
        words = clause.split()
        colour = next((w for w in words if w in COLOURS), None)
        shape = next((w for w in words if w in SHAPES), None)
        if colour or shape:
            found.append((colour, shape))
    return found


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
        said_colour, said_shape = (named(answer) or [(None, None)])[0]
        colour += said_colour == picture.colour
        shape += said_shape == picture.shape
        both += said_colour == picture.colour and said_shape == picture.shape
        exact += answer.strip() == picture.answer
    n = max(len(pictures), 1)
    return Accuracy(colour / n, shape / n, both / n, exact / n)


def score_pairs(pairs: list[Pair], answers: list[str]) -> Accuracy:
    """Each picture of a pair scored against the clause naming it (first, then second)."""
    pictures: list[Picture] = []
    clauses: list[str] = []
    for pair, answer in zip(pairs, answers, strict=True):
        said = named(answer) + [(None, None)] * 2
        for picture, (colour, shape) in zip((pair.first, pair.second), said, strict=False):
            pictures.append(picture)
            clauses.append(f"{colour} {shape}")
    accuracy = score(pictures, clauses)
    exact = sum(a.strip() == p.answer for p, a in zip(pairs, answers, strict=True))
    return Accuracy(accuracy.colour, accuracy.shape, accuracy.both, exact / max(len(pairs), 1))


def compare(
    pictures: list[Picture], pairs: list[Pair], torch_answers: list[str], llama_answers: list[str]
) -> dict[str, float]:
    """Held-out accuracy in torch and through llama.cpp (answers: pictures first, then pairs),
    and how often the two paths answer word for word alike."""
    single = len(pictures)
    same = sum(a == b for a, b in zip(torch_answers, llama_answers, strict=True))
    return {
        **score(pictures, torch_answers[:single]).as_dict("torch"),
        **score(pictures, llama_answers[:single]).as_dict("llamacpp"),
        **score_pairs(pairs, torch_answers[single:]).as_dict("torch_pairs"),
        **score_pairs(pairs, llama_answers[single:]).as_dict("llamacpp_pairs"),
        "llamacpp_equals_torch": round(same / max(len(llama_answers), 1), 4),
    }
