"""Reading tool calls out of generated text as it streams.

Text before a call is the answer's content (a suffix that may be the start of ``<tool_call>`` is
held back until the next piece tells). Inside a call, the function's name is known once its
frame is read, and the arguments' JSON text is passed on as it comes, up to the brace that
closes it: OpenAI's streamed ``tool_calls`` deltas (id and name first, then fragments).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from fovea.engine.tools.prompt import CALL_CLOSE, CALL_OPEN
from fovea.engine.types import ToolCallDelta

_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*')
_TAIL = re.compile(r"\s*\}\s*" + re.escape(CALL_CLOSE))


class _State(Enum):
    CONTENT = "content"
    HEAD = "head"  # after <tool_call>, before the arguments
    ARGUMENTS = "arguments"
    TAIL = "tail"  # after the arguments, before </tool_call>


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass
class Parsed:
    content: str = ""
    calls: list[ToolCallDelta] = field(default_factory=list)


class ToolCallParser:
    def __init__(self, new_id: Callable[[], str] = new_call_id) -> None:
        self._new_id = new_id
        self._state = _State.CONTENT
        self._buffer = ""
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._started = False  # the arguments' first character was seen
        self.calls = 0  # calls whose frame closed

    @property
    def index(self) -> int:
        return self.calls

    def feed(self, text: str) -> Parsed:
        self._buffer += text
        parsed = Parsed()
        while self._step(parsed):
            pass
        return parsed

    def close(self) -> Parsed:
        """The end of the text: whatever was held back. A call cut short (max tokens) keeps
        the arguments sent so far."""
        parsed = Parsed()
        if self._state == _State.CONTENT:
            parsed.content, self._buffer = self._buffer, ""
        elif self._state == _State.HEAD:
            parsed.content, self._buffer = CALL_OPEN + self._buffer, ""
        return parsed

    def _step(self, parsed: Parsed) -> bool:
        """Consume what the buffer allows; True when another step may consume more."""
        if self._state == _State.CONTENT:
            return self._content(parsed)
        if self._state == _State.HEAD:
            return self._head(parsed)
        if self._state == _State.ARGUMENTS:
            return self._arguments(parsed)
        return self._tail()

    def _content(self, parsed: Parsed) -> bool:
        start = self._buffer.find(CALL_OPEN)
        if start >= 0:
            text = self._buffer[:start]
            # Between calls, and before the first, blank space is the frame's, not content.
            parsed.content += "" if not text.strip() else text
            self._buffer = self._buffer[start + len(CALL_OPEN) :]
            self._state = _State.HEAD
            return True
        held = _partial_suffix(self._buffer, CALL_OPEN)
        text = self._buffer[: len(self._buffer) - held]
        if self.calls and not text.strip():
            text = ""
        parsed.content += text
        self._buffer = self._buffer[len(self._buffer) - held :]
        return False

    def _head(self, parsed: Parsed) -> bool:
        match = _HEAD.match(self._buffer)
        if match is None:
            return False
        name = json.loads(f'"{match.group(1)}"')
        parsed.calls.append(ToolCallDelta(self.index, id=self._new_id(), name=name))
        self._buffer = self._buffer[match.end() :]
        self._state = _State.ARGUMENTS
        self._depth, self._in_string, self._escaped, self._started = 0, False, False, False
        return True

    def _arguments(self, parsed: Parsed) -> bool:
        end = self._scan()
        fragment = self._buffer[:end] if end is not None else self._buffer
        if fragment:
            parsed.calls.append(ToolCallDelta(self.index, arguments=fragment))
        if end is None:
            self._buffer = ""
            return False
        self._buffer = self._buffer[end:]
        self._state = _State.TAIL
        return True

    def _scan(self) -> int | None:
        """The end of the arguments' JSON value in the buffer, if it is there."""
        for position, char in enumerate(self._buffer):
            if not self._started:
                if char.isspace():
                    continue
                self._started = True
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
                    if self._depth == 0:
                        return position + 1
                continue
            if char == '"':
                self._in_string = True
            elif char in "{[":
                self._depth += 1
            elif char in "}]":
                self._depth -= 1
                if self._depth == 0:
                    return position + 1
            elif self._depth == 0 and char in ",\n":
                return position  # a bare number, true, false or null ended
        return None

    def _tail(self) -> bool:
        match = _TAIL.match(self._buffer)
        if match is None:
            return False
        self._buffer = self._buffer[match.end() :]
        self.calls += 1
        self._state = _State.CONTENT
        return True


def _partial_suffix(text: str, marker: str) -> int:
    """The length of the longest suffix of ``text`` that ``marker`` starts with."""
    for size in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0
