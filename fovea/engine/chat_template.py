"""Chat templates: turning messages into the prompt text a model was trained on.

A deployment names a built-in template (``gemma3``) or relies on the GGUF's own
``tokenizer.chat_template``. Images become the runtime's media marker in the text.

Tools: a template that renders them itself in the format Fovea parses (Hermes's
``<tool_call>`` blocks: Qwen 2.5 and 3, Hermes and others) gets them as Hugging Face's
``apply_chat_template`` passes them, with assistant ``tool_calls`` and ``role: tool`` messages.
Any other template gets the generic tool prompt (``fovea.engine.tools.prompt``) as plain turns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import jinja2
import jinja2.meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from fovea.engine.tools.prompt import CALL_OPEN, lower
from fovea.engine.types import Message, TextPart, ToolCall, ToolUse
from fovea.errors import InvalidRequestError

# Gemma 3's official template (instruction-tuned models), as in its tokenizer_config.json.
GEMMA3_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

BUILTIN_TEMPLATES = {"gemma3": GEMMA3_TEMPLATE}


class TemplateError(Exception):
    """The template itself is broken (an operator error, reported at load time)."""


@dataclass(frozen=True)
class ChatTemplate:
    """A compiled template plus the special-token strings it is rendered with."""

    source: str
    bos_token: str
    eos_token: str
    # Whether the template renders tools in the format Fovea parses (set from the source).
    renders_tools: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.filters["tojson"] = _tojson
        try:
            compiled = env.from_string(self.source)
            names = jinja2.meta.find_undeclared_variables(env.parse(self.source))
        except jinja2.TemplateError as exc:
            raise TemplateError(f"chat template does not compile: {exc}") from exc
        object.__setattr__(self, "_compiled", compiled)
        object.__setattr__(self, "renders_tools", "tools" in names and CALL_OPEN in self.source)

    def render(
        self, messages: tuple[Message, ...], media_marker: str, tools: ToolUse | None = None
    ) -> str:
        """Render the prompt; images become ``media_marker`` at their place in the text. Tools
        and tool turns go to a template that renders them, else into the generic prompt."""
        compiled: jinja2.Template = object.__getattribute__(self, "_compiled")
        native = self.renders_tools
        if not native:
            messages = lower(messages, tools)
        try:
            return compiled.render(
                messages=_template_messages(messages, media_marker),
                tools=_template_tools(tools) if native and tools is not None else None,
                add_generation_prompt=True,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                raise_exception=_raise,
            )
        except _TemplateRaised as exc:
            raise InvalidRequestError(
                f"The model's chat template rejected the messages: {exc}", param="messages"
            ) from exc
        except jinja2.TemplateError as exc:
            raise InvalidRequestError(
                f"The model's chat template could not render these messages: {exc}",
                param="messages",
            ) from exc


def resolve_template(name_or_source: str | None, gguf_template: str | None) -> str:
    """The deployment's template (a built-in name or a Jinja source), else the GGUF's own."""
    if name_or_source:
        return BUILTIN_TEMPLATES.get(name_or_source, name_or_source)
    if gguf_template:
        return gguf_template
    raise TemplateError(
        "the model file has no tokenizer.chat_template; set chat_template in the catalog "
        f"(built-in: {', '.join(sorted(BUILTIN_TEMPLATES))})"
    )


def normalize_roles(messages: tuple[Message, ...]) -> tuple[Message, ...]:
    """One leading system message, then turns with consecutive same-role messages merged.

    Most chat templates (Gemma's among them) accept only that shape; OpenAI clients send
    system messages anywhere and several user messages in a row. Tool results and assistant
    tool calls stay separate messages: each answers or makes its own calls.
    """
    system_parts = [p for m in messages if m.role == "system" for p in m.parts]
    merged: list[Message] = []
    for message in messages:
        if message.role == "system":
            continue
        separate = message.role == "tool" or message.tool_calls
        if (
            merged
            and merged[-1].role == message.role
            and not separate
            and not merged[-1].tool_calls
        ):
            previous = merged.pop()
            joined = (*previous.parts, TextPart("\n\n"), *message.parts)
            merged.append(Message(message.role, joined))
        else:
            merged.append(message)
    if system_parts:
        merged.insert(0, Message("system", tuple(system_parts)))
    return tuple(merged)


class _TemplateRaised(Exception):
    pass


def _raise(message: str) -> None:
    raise _TemplateRaised(message)


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


def _template_tools(tools: ToolUse) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {"name": f.name, "description": f.description, "parameters": f.parameters},
        }
        for f in tools.functions
    ]


def _template_call(call: ToolCall) -> dict[str, Any]:
    """A call as templates read it: arguments as an object (they write it with ``tojson``)."""
    try:
        arguments: Any = json.loads(call.arguments)
    except ValueError:
        arguments = call.arguments
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": arguments},
    }


def _template_messages(messages: tuple[Message, ...], marker: str) -> list[dict[str, Any]]:
    names = {call.id: call.name for message in messages for call in message.tool_calls}
    rendered = []
    for message in normalize_roles(messages):
        # System text is a plain string: templates read only the first part of a system list.
        if message.role == "system" or all(isinstance(p, TextPart) for p in message.parts):
            content: Any = "".join(
                p.text if isinstance(p, TextPart) else marker for p in message.parts
            )
        else:
            content = [
                {"type": "text", "text": p.text if isinstance(p, TextPart) else marker}
                for p in message.parts
            ]
        item: dict[str, Any] = {"role": message.role, "content": content}
        if message.tool_calls:
            item["tool_calls"] = [_template_call(call) for call in message.tool_calls]
        if message.role == "tool":
            item["tool_call_id"] = message.tool_call_id
            item["name"] = names.get(message.tool_call_id or "", "")
        rendered.append(item)
    return rendered
