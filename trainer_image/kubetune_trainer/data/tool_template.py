"""Can a chat template render function calling? Checked before any GPU is held.

A template that ignores `tools`, `tool_calls` or `tool` messages would train the model on
conversations with the calls silently left out. The probe renders a conversation holding one
tool, one call and its answer, and requires each of them in the text: the tool's name, the
call's arguments, the tool's answer.
"""

from __future__ import annotations

from typing import Any

from jinja2 import TemplateError

from ..errors import InvalidInput
from .validation import TRAINING_FIELD

PROBE_TOOL = "kubetune_probe_tool"
PROBE_ARGUMENT = "kubetune_probe_argument"
PROBE_VALUE = "kubetune_probe_value"
PROBE_DESCRIPTION = "kubetune_probe_description"
PROBE_ANSWER = "kubetune_probe_answer"
PROBE_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": PROBE_TOOL,
            "description": PROBE_DESCRIPTION,
            "parameters": {"type": "object", "properties": {PROBE_ARGUMENT: {"type": "string"}}},
        },
    }
]
PROBE_MESSAGES: list[dict[str, Any]] = [
    {"role": "user", "content": "Probe?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call_0",
                "type": "function",
                "function": {"name": PROBE_TOOL, "arguments": {PROBE_ARGUMENT: PROBE_VALUE}},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_0", "name": PROBE_TOOL, "content": PROBE_ANSWER},
    {"role": "assistant", "content": "Done."},
]


def missing_tool_parts(template: str) -> list[str]:
    """What the template leaves out of a function-calling conversation; empty when it renders all of it."""
    from transformers.utils.chat_template_utils import render_jinja_template  # noqa: PLC0415 - trainer-only

    try:
        rendered = render_jinja_template(
            conversations=[PROBE_MESSAGES], tools=PROBE_TOOLS, chat_template=template, bos_token="", eos_token=""
        )
    except TemplateError as refused:
        return [f"it refuses tool calls ({refused})"]
    text = rendered[0] if isinstance(rendered, tuple | list) else rendered
    checks = {
        "the tools offered": PROBE_DESCRIPTION,
        "the assistant's tool calls": PROBE_VALUE,
        "tool results": PROBE_ANSWER,
    }
    return [what for what, needle in checks.items() if needle not in str(text)]


def require_tool_template(template: str, *, source: str, field: str = TRAINING_FIELD) -> None:
    """Refuse (InvalidInput) a template that cannot render the function-calling data of `field`."""
    missing = missing_tool_parts(template)
    if missing:
        raise InvalidInput(
            f"{field} holds function-calling data (tools, tool_calls, tool messages), and the chat template of "
            f"{source} cannot render it: it leaves out {', '.join(missing)}.",
            reason="ChatTemplateCannotRenderTools",
            field=field,
            hint="Pick a model whose chat template renders tools (Llama 3.1+, Qwen 2.5+, Mistral's tool "
            "templates), or remove tools, tool_calls and tool messages from the data.",
        )
