"""``input_image`` parts that name an uploaded file (``file_id``) instead of a URL: the file of
the caller's folder read and inlined as a data URL, so the rest of the path (image intake, the
stored turn a conversation continues from) sees what a client sending the bytes would send."""

from __future__ import annotations

import base64
from pathlib import Path

from anyio import to_thread

from fovea.errors import InvalidRequestError, NotFoundError, PayloadTooLargeError
from fovea.protocol import responses as wire
from fovea.services.files import FileService

# What OpenAI asks image files to be uploaded as.
IMAGE_PURPOSES = ("vision", "user_data")


async def inline_file_images(
    body: wire.CreateResponseRequest, files: FileService, folder_id: str, max_bytes: int
) -> wire.CreateResponseRequest:
    """``body`` with each ``input_image``'s ``file_id`` replaced by the file's bytes."""
    items = list(body.input)
    changed = False
    for i, item in enumerate(items):
        if not isinstance(item, wire.MessageItem) or isinstance(item.content, str):
            continue
        content = list(item.content)
        for j, part in enumerate(content):
            if isinstance(part, wire.InputImage) and part.file_id is not None:
                at = f"input[{i}].content[{j}]"
                url = await _data_url(part, files, folder_id, max_bytes, at)
                content[j] = part.model_copy(update={"image_url": url, "file_id": None})
                changed = True
        items[i] = item.model_copy(update={"content": content})
    return body.model_copy(update={"input": items}) if changed else body


async def _data_url(
    part: wire.InputImage, files: FileService, folder_id: str, max_bytes: int, at: str
) -> str:
    assert part.file_id is not None
    if part.image_url is not None:
        raise InvalidRequestError(
            f"{at}: input_image takes an image_url or a file_id, not both", param=at
        )
    try:
        stored = await to_thread.run_sync(files.get_stored, part.file_id, folder_id)
    except NotFoundError:
        raise InvalidRequestError(
            f"{at}.file_id: there is no file {part.file_id!r} in this folder; upload the image "
            "with POST /v1/files (purpose 'vision') and send the id it returns",
            param=f"{at}.file_id",
        ) from None
    if stored.purpose not in IMAGE_PURPOSES:
        raise InvalidRequestError(
            f"{at}.file_id: file {part.file_id} was uploaded with purpose {stored.purpose!r}; "
            f"images are files with purpose {' or '.join(repr(p) for p in IMAGE_PURPOSES)}",
            param=f"{at}.file_id",
        )
    if stored.bytes > max_bytes:
        raise PayloadTooLargeError(
            f"{at}.file_id: file {part.file_id} has {stored.bytes} bytes, over the image limit "
            f"of {max_bytes} (FOVEA_MAX_IMAGE_BYTES)",
            param=f"{at}.file_id",
        )
    data = await to_thread.run_sync(Path(stored.path).read_bytes)
    # The bytes decide the type (image intake sniffs them), whatever the file was named.
    return "data:application/octet-stream;base64," + base64.b64encode(data).decode("ascii")
