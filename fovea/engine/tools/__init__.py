"""Tool calling for in-process models.

``prompt`` lowers tools and tool messages into plain turns with a generic instruction, for
templates that do not render tools themselves (``engine.chat_template``); ``grammar``
builds the GBNF under which a call is generated, so that its arguments always parse and match
the function's JSON schema; ``parser`` reads calls back out of the generated text as they
stream; ``generation`` ties the three around an engine's ``generate``. The format is the one
Hermes-style templates use: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``.
"""

from fovea.engine.tools.generation import generate_with_tools

__all__ = ["generate_with_tools"]
