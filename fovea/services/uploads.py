"""Reads a ``multipart/form-data`` upload as it arrives: text fields kept, the file to a sink.

The body is parsed in batches of about a megabyte in a worker thread (parsing and writing
both block), so an upload holds a bounded amount of memory whatever the file's size.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath, PureWindowsPath
from typing import BinaryIO, cast

from anyio import to_thread
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from fovea.errors import InvalidRequestError

FILE_FIELD = "file"
BATCH_BYTES = 1024 * 1024
MAX_FIELD_BYTES = 64 * 1024  # all text fields together
MAX_HEADER_BYTES = 16 * 1024  # one part's headers
MAX_FILENAME_CHARS = 255  # the files table's column


@dataclass
class _Part:
    name: str = ""
    is_file: bool = False
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    header_name: bytes = b""
    header_value: bytes = b""
    header_bytes: int = 0
    text: bytearray = field(default_factory=bytearray)


class MultipartUpload:
    """One upload body: the part named ``file`` is written to ``sink``, text parts kept.

    ``write`` and ``finish`` block; call them from a worker thread (``receive_upload`` does).
    Malformed bodies raise ``InvalidRequestError``.
    """

    def __init__(self, content_type: str | None, sink: BinaryIO) -> None:
        self._sink = sink
        self.fields: dict[str, str] = {}
        self.filename: str | None = None  # None until a file part arrives
        self.size = 0
        self._part = _Part()
        self._field_bytes = 0
        self._is_ended = False
        self._parser = MultipartParser(
            _boundary(content_type),
            callbacks={
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_end": self._on_end,
            },
        )

    def write(self, data: bytes | bytearray) -> None:
        try:
            # The parser only indexes and slices: a bytearray works and spares a copy.
            self._parser.write(cast(bytes, data))
        except FormParserError as exc:
            raise InvalidRequestError(f"The multipart/form-data body is malformed: {exc}") from None

    def finish(self) -> None:
        self._parser.finalize()
        if not self._is_ended:
            raise InvalidRequestError(
                "The multipart/form-data body ended before its closing boundary"
            )

    # -- parser callbacks ----------------------------------------------------------------

    def _on_part_begin(self) -> None:
        self._part = _Part()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._part.header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._part.header_value += data[start:end]

    def _on_header_end(self) -> None:
        part = self._part
        part.headers.append((part.header_name.lower(), part.header_value))
        part.header_name, part.header_value = b"", b""

    def _on_headers_finished(self) -> None:
        disposition = dict(self._part.headers).get(b"content-disposition")
        _, options = parse_options_header(disposition)
        if b"name" not in options:
            raise InvalidRequestError(
                "A multipart part has no name in its Content-Disposition header"
            )
        self._part.name = _decode(options[b"name"])
        if self._part.name != FILE_FIELD:
            return
        if self.filename is not None:
            raise InvalidRequestError("Send one file per upload", param=FILE_FIELD)
        self._part.is_file = True
        self.filename = _clean_filename(_decode(options.get(b"filename", b"")))

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part.is_file:
            self._sink.write(memoryview(data)[start:end])  # no copy of the batch
            self.size += end - start
            return
        self._field_bytes += end - start
        if self._field_bytes > MAX_FIELD_BYTES:
            raise InvalidRequestError(
                f"The form's text fields are over {MAX_FIELD_BYTES} bytes in all"
            )
        self._part.text += data[start:end]

    def _on_part_end(self) -> None:
        if not self._part.is_file:
            self.fields.setdefault(self._part.name, _decode(bytes(self._part.text)))

    def _on_end(self) -> None:
        self._is_ended = True

    def _count_header(self, size: int) -> None:
        self._part.header_bytes += size
        if self._part.header_bytes > MAX_HEADER_BYTES:
            raise InvalidRequestError(f"A multipart part has over {MAX_HEADER_BYTES} header bytes")


async def receive_upload(body: AsyncIterable[bytes], upload: MultipartUpload) -> None:
    """Feed ``body`` to ``upload`` in batches of about ``BATCH_BYTES``, off the event loop."""
    batch = bytearray()
    async for chunk in body:
        batch += chunk
        if len(batch) >= BATCH_BYTES:
            await to_thread.run_sync(upload.write, batch)
            batch = bytearray()
    if batch:
        await to_thread.run_sync(upload.write, batch)
    upload.finish()


def _boundary(content_type: str | None) -> bytes:
    media_type, options = parse_options_header(content_type)
    if media_type != b"multipart/form-data":
        raise InvalidRequestError(
            "Upload files as multipart/form-data with the fields 'file' and 'purpose'"
        )
    boundary = options.get(b"boundary")
    if not boundary:
        raise InvalidRequestError("The multipart/form-data Content-Type has no boundary")
    return boundary


def _decode(raw: bytes) -> str:
    # Headers arrive as latin-1; clients send UTF-8 names in them.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _clean_filename(name: str) -> str:
    """The last path component, without control or format characters (NUL, CR, LF, bidi
    overrides), at most 255 characters; ``file`` when nothing is left, or only dots."""
    printable = "".join(ch for ch in name if ch.isprintable())
    base = PureWindowsPath(PurePosixPath(printable).name).name
    base = base[-MAX_FILENAME_CHARS:]
    return base if base.strip(". ") else FILE_FIELD
