"""The reference client: two images and a question, through the official ``openai`` package.

Written for the cloud; only ``base_url``, the key and the folder id change. Run ``make run``,
then, with the values it prints:

    FOVEA_API_KEY=... FOVEA_FOLDER_ID=... .venv/bin/python examples/compare_images.py

On the demo model it prints "The first picture shows a red circle, the second a blue star."
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from openai import OpenAI

API_KEY = os.environ["FOVEA_API_KEY"]
FOLDER_ID = os.environ["FOVEA_FOLDER_ID"]
BASE_URL = os.environ.get("FOVEA_BASE_URL", "http://127.0.0.1:8000/v1")
MODEL = os.environ.get("FOVEA_MODEL", "gemma-3-demo")  # gemma-3-27b-it once you add its files
IMAGES = Path(__file__).parent / "images"


def encode(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


# Two pictures inside the demo model's closed world (see examples/images/README.md).
img1 = encode(IMAGES / "red-circle.png")
img2 = encode(IMAGES / "blue-star.png")

client = OpenAI(api_key=API_KEY, base_url=BASE_URL)
response = client.chat.completions.create(
    model=f"gpt://{FOLDER_ID}/{MODEL}",
    messages=[
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare these two pictures"},
                # As in the cloud's own example: PNG files labelled image/jpeg. Fovea sniffs
                # the bytes instead of trusting the declared type.
                {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{img1}"}},
                {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{img2}"}},
            ],
        }
    ],
)
print(response.choices[0].message.content)
