"""What the demo model says about a picture, through the whole HTTP path of a real server.

The demo's vision tower was trained by Fovea on the closed world of ``fovea.modelgen.vision``
(one large shape, 8 colours, 5 shapes). These pictures are held out from training: their seeds
were never drawn. The bar (90% on colour and on shape) is below what ``make ship-vision``
measured through llama.cpp on 200 held-out pictures (docs/benchmarks.md), with room for the
image path's own resampling. Everything is greedy, so each answer is reproducible.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest
from PIL import Image

from fovea.media.samples import CLOSED_WORLD
from fovea.modelgen.demo import DemoModelFiles
from fovea.modelgen.vision.evaluation import held_out, named, score
from fovea.modelgen.vision.pictures import Picture
from tests.contract.demo_server import DemoServer, demo_server
from tests.processes import vision_deployment

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "examples" / "images"
# One held-out scene for the encodings: a purple triangle, 4:3, off-centre.
TRIANGLE = Picture(
    colour="purple",
    shape="triangle",
    background="beige",
    aspect=(4, 3),
    radius=0.38,
    offset=(0.05, -0.03),
    question="What is in this picture?",
    image_first=True,
)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, demo_model: DemoModelFiles
) -> Iterator[DemoServer]:
    # The same text model with the random projector of the same shape: a tower that sees nothing.
    blind = vision_deployment("gemma-3-demo-random", demo_model.model, demo_model.random_mmproj)
    with demo_server(tmp_path_factory.mktemp("home"), demo_model, blind) as server:
        yield server


Ask = Callable[..., str]


@pytest.fixture(scope="module")
def ask(server: DemoServer) -> Ask:
    client = openai.OpenAI(api_key=server.api_key, base_url=server.base_url)

    def ask(
        *images: bytes,
        question: str = "What is in this picture?",
        image_first: bool = False,
        model: str = "gemma-3-demo",
    ) -> str:
        content: list[dict[str, object]] = [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + _b64(image)}}
            for image in images
        ]
        text = {"type": "text", "text": question}
        content = [*content, text] if image_first else [text, *content]
        response = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": content}],  # type: ignore[misc]
            max_tokens=24,
            temperature=0,
        )
        return response.choices[0].message.content or ""

    return ask


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def encoded(image: Image.Image, format: str = "PNG", **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format, **options)
    return out.getvalue()


def test_held_out_pictures_are_named_by_colour_and_shape(ask: Ask) -> None:
    pictures = held_out(40)
    answers = [
        ask(encoded(p.image), question=p.question, image_first=p.image_first) for p in pictures
    ]
    accuracy = score(pictures, answers)
    wrong = [(p.answer, a) for p, a in zip(pictures, answers, strict=True) if p.answer != a]
    assert accuracy.colour >= 0.9, wrong
    assert accuracy.shape >= 0.9, wrong


def _rotated_with_exif(image: Image.Image) -> bytes:
    # Stored turned a quarter to the left, with the tag that says "turn right to show it".
    stored = image.rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    return encoded(stored, "JPEG", quality=95, exif=exif)


def test_the_same_picture_in_every_encoding_gets_the_same_answer(ask: Ask) -> None:
    image = TRIANGLE.render(480)
    reference = ask(encoded(image))
    assert named(reference) == [("purple", "triangle")], reference
    variants = {
        "JPEG": encoded(image, "JPEG", quality=90),
        "WebP": encoded(image, "WEBP", quality=90),
        "EXIF rotation": _rotated_with_exif(image),
        "CMYK JPEG": encoded(image.convert("CMYK"), "JPEG", quality=95),
        "PNG with alpha": encoded(image.convert("RGBA")),
        "12 MP": encoded(TRIANGLE.render(3000), "JPEG", quality=90),  # 4000 x 3000
    }
    answers = {name: ask(data) for name, data in variants.items()}
    assert answers == dict.fromkeys(variants, reference)


@pytest.mark.parametrize(("colour", "swapped"), [("red", "blue"), ("blue", "red")])
def test_red_and_blue_swapped_is_named_with_the_swapped_colour(
    ask: Ask, colour: str, swapped: str
) -> None:
    scene = Picture(
        colour=colour,
        shape="square",
        background="light grey",
        aspect=(1, 1),
        radius=0.35,
        offset=(0.0, 0.0),
        question="What is in this picture?",
        image_first=True,
    )
    image = scene.image
    red, green, blue = image.split()
    channels_swapped = Image.merge("RGB", (blue, green, red))
    assert named(ask(encoded(image))) == [(colour, "square")]
    assert named(ask(encoded(channels_swapped))) == [(swapped, "square")]


def test_the_reference_clients_compare_answer_names_both_pictures(ask: Ask) -> None:
    first, second = (
        (IMAGES / "red-circle.png").read_bytes(),
        (IMAGES / "blue-star.png").read_bytes(),
    )
    expected = [(p.colour, p.shape) for p in CLOSED_WORLD.values()]
    assert expected == [("red", "circle"), ("blue", "star")]
    answer = ask(first, second, question="Compare these two pictures")
    assert named(answer) == expected, answer
    swapped = ask(second, first, question="Compare these two pictures")
    assert named(swapped) == expected[::-1], swapped


def test_the_random_tower_does_not_see_what_the_trained_one_names(ask: Ask) -> None:
    pictures = held_out(48)[40:]  # not the ones above
    trained = score(pictures, [ask(encoded(p.image)) for p in pictures])
    blind = score(pictures, [ask(encoded(p.image), model="gemma-3-demo-random") for p in pictures])
    assert trained.both >= 0.75
    assert blind.both <= 0.25
