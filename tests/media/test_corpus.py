"""The hostile corpus: every case decodes as expected or is refused with the right status.

Whatever a case holds, only ``FoveaError`` may come out, naming the message part.
"""

from __future__ import annotations

import pytest

from fovea.errors import FoveaError
from fovea.media.images import decode_image_url

from .builders import POSITION, close_to, rgb_at
from .corpus import CORPUS, CORPUS_LIMITS, Case, Decodes, build_corpus


@pytest.fixture(scope="module")
def corpus() -> dict[str, Case]:
    return build_corpus()


@pytest.mark.parametrize("name", list(CORPUS))
def test_corpus_case(corpus: dict[str, Case], name: str) -> None:
    case = corpus[name]
    try:
        image = decode_image_url(
            case.url, position=POSITION, limits=CORPUS_LIMITS, min_side=case.min_side
        )
    except FoveaError as error:
        assert not isinstance(case.expected, Decodes), f"refused: {error.message}"
        assert error.status_code == case.expected.status
        assert case.expected.fragment in error.message
        assert POSITION in error.message
        assert error.param == POSITION
        return
    expected = case.expected
    assert isinstance(expected, Decodes), f"decoded to {image.width}x{image.height}"
    assert (image.width, image.height) == (expected.width, expected.height)
    assert len(image.rgb) == image.width * image.height * 3
    if expected.colour is not None:
        x, y = expected.at or (image.width // 2, image.height // 2)
        assert close_to(rgb_at(image.rgb, image.width, x, y), expected.colour, 40)
