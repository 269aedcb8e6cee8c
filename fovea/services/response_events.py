"""The Responses API's streamed events, built from chat's chunk deltas as they arrive."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from fovea.protocol import chat as chat_wire
from fovea.protocol import responses as wire
from fovea.services.response_items import plain_dict


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class EventStream:
    """Numbers the events and builds the output items as chat's deltas arrive: text goes to
    one message item, each tool call to a function_call item."""

    def __init__(self) -> None:
        self._numbers = itertools.count()
        self.output: list[wire.OutputItem] = []
        self._message: wire.OutputMessage | None = None  # the open message item
        self._text: list[str] = []
        self._calls: dict[int, tuple[int, wire.FunctionCall, list[str]]] = {}

    def lifecycle(
        self, kind: wire.LifecycleEventType, response: wire.ResponseObject
    ) -> wire.ResponseLifecycleEvent:
        return wire.ResponseLifecycleEvent(
            type=kind, sequence_number=next(self._numbers), response=response
        )

    def feed(self, delta: chat_wire.ChoiceDelta) -> list[wire.ResponseEvent]:
        events: list[wire.ResponseEvent] = []
        if delta.content:
            if self._message is None:
                events += self._open_message()
            assert self._message is not None
            self._text.append(delta.content)
            events.append(
                wire.TextDeltaEvent(
                    sequence_number=next(self._numbers),
                    item_id=self._message.id,
                    output_index=len(self.output) - 1,
                    content_index=0,
                    delta=delta.content,
                )
            )
        # getattr: chat's deltas carry tool_calls when chat has tool calling (ChoiceDelta).
        for call in getattr(delta, "tool_calls", None) or ():
            events += self._feed_call(plain_dict(call))
        return events

    def close(self, status: wire.ItemStatus) -> list[wire.ResponseEvent]:
        """The done events of every open item (an empty message if there was no output)."""
        events: list[wire.ResponseEvent] = []
        if self._message is None and not self._calls:
            events += self._open_message()
        if self._message is not None:
            events += self._close_message(status)
        for index, item, arguments in self._calls.values():
            done = item.model_copy(update={"status": status, "arguments": "".join(arguments)})
            self.output[index] = done
            events.append(
                wire.FunctionArgumentsDoneEvent(
                    sequence_number=next(self._numbers),
                    item_id=item.id,
                    output_index=index,
                    name=item.name,
                    arguments=done.arguments,
                )
            )
            events.append(self._item_event("response.output_item.done", index, done))
        self._calls.clear()
        return events

    def _open_message(self) -> list[wire.ResponseEvent]:
        self._message = wire.OutputMessage(id=new_id("msg"), status="in_progress", content=[])
        self.output.append(self._message)
        index = len(self.output) - 1
        return [
            self._item_event("response.output_item.added", index, self._message),
            self._part_event("response.content_part.added", index, wire.OutputText(text="")),
        ]

    def _close_message(self, status: wire.ItemStatus) -> list[wire.ResponseEvent]:
        assert self._message is not None
        index = self.output.index(self._message)
        part = wire.OutputText(text="".join(self._text))
        done = self._message.model_copy(update={"status": status, "content": [part]})
        self.output[index] = done
        events: list[wire.ResponseEvent] = [
            wire.TextDoneEvent(
                sequence_number=next(self._numbers),
                item_id=done.id,
                output_index=index,
                content_index=0,
                text=part.text,
            ),
            self._part_event("response.content_part.done", index, part),
            self._item_event("response.output_item.done", index, done),
        ]
        self._message, self._text = None, []
        return events

    def _feed_call(self, call: dict[str, Any]) -> list[wire.ResponseEvent]:
        events: list[wire.ResponseEvent] = []
        function = call.get("function") or {}
        if call["index"] not in self._calls:
            if self._message is not None:
                events += self._close_message("completed")
            item = wire.FunctionCall(
                id=new_id("fc"),
                status="in_progress",
                call_id=call.get("id") or new_id("call"),
                name=function.get("name") or "",
                arguments="",
            )
            self.output.append(item)
            self._calls[call["index"]] = (len(self.output) - 1, item, [])
            index = len(self.output) - 1
            events.append(self._item_event("response.output_item.added", index, item))
        index, item, arguments = self._calls[call["index"]]
        fragment = function.get("arguments") or ""
        if fragment:
            arguments.append(fragment)
            events.append(
                wire.FunctionArgumentsDeltaEvent(
                    sequence_number=next(self._numbers),
                    item_id=item.id,
                    output_index=index,
                    delta=fragment,
                )
            )
        return events

    def _item_event(
        self, kind: wire.OutputItemEventType, index: int, item: wire.OutputItem
    ) -> wire.OutputItemEvent:
        return wire.OutputItemEvent(
            type=kind, sequence_number=next(self._numbers), output_index=index, item=item
        )

    def _part_event(
        self, kind: wire.ContentPartEventType, index: int, part: wire.OutputText
    ) -> wire.ContentPartEvent:
        assert self._message is not None
        return wire.ContentPartEvent(
            type=kind,
            sequence_number=next(self._numbers),
            item_id=self._message.id,
            output_index=index,
            content_index=0,
            part=part,
        )
