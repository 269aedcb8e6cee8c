"""The generic tool prompt: functions described in the system turn, earlier calls and their
results as text, for templates that know nothing of tools (docs/decisions.md)."""

from __future__ import annotations

import json

from fovea.engine.types import Message, TextPart, ToolUse

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"
RESULT_OPEN = "<tool_response>"
RESULT_CLOSE = "</tool_response>"


def call_text(name: str, arguments: str) -> str:
    """A call as the model writes it (and as the grammar lets it)."""
    return f'{CALL_OPEN}{{"name": {json.dumps(name)}, "arguments": {arguments}}}{CALL_CLOSE}'


def instructions(tools: ToolUse) -> str:
    functions = [
        {"name": f.name, "description": f.description, "parameters": f.parameters}
        for f in tools.functions
    ]
    if tools.choice == "required":
        rule = "You must call at least one of these functions now."
    elif tools.choice != "auto":
        rule = f"You must call the function {tools.choice} now."
    else:
        rule = "Call a function when it helps answer; otherwise answer in text."
    calls_several = tools.parallel and tools.choice in ("auto", "required")
    several = " Write one block per call, one after another." if calls_several else ""
    return (
        "You can call these functions (their arguments as JSON schemas):\n"
        f"{json.dumps(functions, ensure_ascii=False)}\n"
        "To call a function, write exactly:\n"
        f'{CALL_OPEN}{{"name": "<function name>", "arguments": {{<arguments as JSON>}}}}'
        f"{CALL_CLOSE}\n{rule}{several} The results come back in {RESULT_OPEN} blocks.\n\n"
    )


def lower(messages: tuple[Message, ...], tools: ToolUse | None) -> tuple[Message, ...]:
    """``messages`` with tool calls and results as text, and ``tools`` described first."""
    names = {call.id: call.name for message in messages for call in message.tool_calls}
    lowered: list[Message] = []
    for message in messages:
        if message.role == "tool":
            content = "".join(p.text for p in message.parts if isinstance(p, TextPart))
            name = names.get(message.tool_call_id or "", "")
            result = json.dumps({"name": name, "content": content}, ensure_ascii=False)
            lowered.append(Message("user", (TextPart(f"{RESULT_OPEN}{result}{RESULT_CLOSE}"),)))
        elif message.tool_calls:
            calls = "\n".join(call_text(c.name, c.arguments) for c in message.tool_calls)
            separator = (TextPart("\n"),) if message.parts else ()
            lowered.append(Message("assistant", (*message.parts, *separator, TextPart(calls))))
        else:
            lowered.append(message)
    if tools is not None:
        lowered.insert(0, Message("system", (TextPart(instructions(tools)),)))
    return tuple(lowered)
