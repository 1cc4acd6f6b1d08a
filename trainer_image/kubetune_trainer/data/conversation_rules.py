"""The rules of a conversation no single field can state: role order, tool calls and their answers.

Together's checker, and what its docs add for function calling and reasoning:

- a `system` message may only come first;
- after it, user and assistant turns alternate; a conversation may start with either (Together's
  checker accepts one that starts with the assistant, and so does kubetune: docs/data.md);
- `tool` messages come right after an assistant message with `tool_calls` (or another tool
  message), and each answers one of those calls by `tool_call_id`;
- `tool_calls` only on assistant messages, their `arguments` a JSON object written as a string,
  their function one of the example's `tools` when it lists any;
- `reasoning` / `reasoning_content` only on assistant messages, and not both;
- a messages example needs an assistant message to learn from.

A preference pair's input follows the same rules, except that it needs no assistant message and
must not end with one; each output is one assistant message, and the two outputs differ.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from .records import Example, Message, MessagesRecord, PreferenceRecord, Tool


def _a(role: str) -> str:
    return "an assistant" if role == "assistant" else f"a {role}"


def conversation_problems(
    messages: Sequence[Message], *, tools: Sequence[Tool] | None, where: str, needs_assistant: bool = True
) -> list[str]:
    """What is wrong with `messages` (named as `where[i]`), in order; empty when nothing is."""
    problems: list[str] = []
    offered = {tool.function.name for tool in tools or ()}
    problems.extend(_tool_list_problems(tools, where=where))
    open_calls: set[str] = set()
    previous: str | None = None
    for index, message in enumerate(messages):
        at = f"`{where}[{index}]`"
        problems.extend(_field_problems(message, at=at, offered=offered))
        role = message.role
        if role == "system":
            if index != 0:
                problems.append(f"{at} is a system message; only the first message may be one")
        elif role == "tool":
            if previous not in {"assistant", "tool"} or (not open_calls and previous == "assistant"):
                problems.append(f"{at} is a tool message with no assistant `tool_calls` before it to answer")
            elif message.tool_call_id is not None and message.tool_call_id not in open_calls:
                problems.append(
                    f"{at[:-1]}.tool_call_id` {json.dumps(message.tool_call_id)} matches no unanswered call of the "
                    "assistant message before it"
                )
            else:
                open_calls.discard(message.tool_call_id or "")
        elif previous == role:
            problems.append(f"{at} is {_a(role)} message after {_a(role)} message; user and assistant must alternate")
        if role != "tool":
            open_calls = {call.id for call in message.tool_calls or ()} if role == "assistant" else set()
        previous = role
    if needs_assistant and not any(message.role == "assistant" for message in messages):
        problems.append("no assistant message; a conversation needs at least one to learn from")
    return problems


def _tool_list_problems(tools: Sequence[Tool] | None, *, where: str) -> list[str]:
    names = [tool.function.name for tool in tools or ()]
    twice = sorted({name for name in names if names.count(name) > 1})
    field = "input.tools" if where.startswith("input") else "tools"
    return [f"`{field}` offers {json.dumps(name)} more than once; each function once" for name in twice]


def _field_problems(message: Message, *, at: str, offered: set[str]) -> list[str]:
    problems: list[str] = []
    role = message.role
    if message.tool_calls is not None and role != "assistant":
        problems.append(f"{at}.tool_calls is only allowed on an assistant message, this is {_a(role)} message")
    if role == "tool" and message.tool_call_id is None:
        problems.append(f"missing field {at[:-1]}.tool_call_id`; a tool message names the call it answers")
    if role != "tool":
        for name in ("tool_call_id", "name"):
            if getattr(message, name) is not None:
                problems.append(f"{at[:-1]}.{name}` is only allowed on a tool message")
    if role != "assistant":
        for name in ("reasoning", "reasoning_content"):
            if getattr(message, name) is not None:
                problems.append(f"{at[:-1]}.{name}` is only allowed on an assistant message")
    elif message.reasoning is not None and message.reasoning_content is not None:
        problems.append(f"{at} has both `reasoning` and `reasoning_content`; give one (they are the same field)")
    if message.content is None and not (role == "assistant" and message.tool_calls):
        given_null = "content" in message.model_fields_set
        problems.append(
            (f"{at[:-1]}.content` must be a string, got null" if given_null else f"missing field {at[:-1]}.content`")
            + ("; an assistant message has `content`, `tool_calls` or both" if role == "assistant" else "")
        )
    problems.extend(_tool_call_problems(message, at=at, offered=offered))
    return problems


def _tool_call_problems(message: Message, *, at: str, offered: set[str]) -> list[str]:
    problems: list[str] = []
    if message.tool_calls is not None and not message.tool_calls:
        problems.append(f"{at[:-1]}.tool_calls` is empty; leave it out when the assistant calls nothing")
    ids = [call.id for call in message.tool_calls or ()]
    for number, call in enumerate(message.tool_calls or ()):
        call_at = f"{at[:-1]}.tool_calls[{number}]"
        if ids.count(call.id) > 1 and ids.index(call.id) == number:
            problems.append(f"{call_at}.id` {json.dumps(call.id)} is used twice in one message; ids are unique")
        problems.extend(_arguments_problems(call.function.arguments, at=f"{call_at}.function.arguments`"))
        if offered and call.function.name not in offered:
            problems.append(
                f"{call_at}.function.name` {json.dumps(call.function.name)} is not one of the example's tools "
                f"({', '.join(sorted(offered))})"
            )
    return problems


def _arguments_problems(arguments: str, *, at: str) -> list[str]:
    try:
        value = json.loads(arguments)
    except (json.JSONDecodeError, RecursionError) as error:
        detail = error.msg if isinstance(error, json.JSONDecodeError) else "nested too deep"
        return [f"{at} is not valid JSON ({detail}); write the arguments object as a JSON string"]
    if not isinstance(value, dict):
        return [f'{at} must be a JSON object written as a string, e.g. "{{\\"city\\": \\"Paris\\"}}"']
    return []


def preference_problems(record: PreferenceRecord) -> list[str]:
    """Together's preference rules: a conversation not ending with the assistant, two different answers."""
    messages = record.input.messages
    problems = conversation_problems(messages, tools=record.input.tools, where="input.messages", needs_assistant=False)
    if messages and messages[-1].role == "assistant":
        problems.append(
            f"`input.messages[{len(messages) - 1}]` is an assistant message; the input ends before the answer, "
            "which goes in `preferred_output` and `non_preferred_output`"
        )
    offered = {tool.function.name for tool in record.input.tools or ()}
    outputs = {"preferred_output": record.preferred_output[0], "non_preferred_output": record.non_preferred_output[0]}
    for name, output in outputs.items():
        at = f"`{name}[0]`"
        if output.role != "assistant":
            problems.append(f"{at[:-1]}.role` must be assistant, got {json.dumps(output.role)}")
            continue
        if output.weight is not None:
            problems.append(f"{at[:-1]}.weight` has no meaning in a preference pair; leave it out")
        problems.extend(_field_problems(output, at=at, offered=offered))
        if not (output.content or "").strip() and not output.tool_calls:
            problems.append(f"{at[:-1]}.content` is empty; an output needs an answer to prefer or not")
    if outputs["preferred_output"] == outputs["non_preferred_output"]:
        problems.append(
            "`preferred_output` and `non_preferred_output` are identical; a pair teaches nothing unless they differ"
        )
    return problems


def uses_tools(examples: Sequence[Example]) -> bool:
    """Whether any example offers tools, calls one or answers a call."""
    return any(_example_uses_tools(example) for example in examples)


def _example_uses_tools(example: Example) -> bool:
    if isinstance(example, MessagesRecord):
        return bool(example.tools) or _messages_use_tools(example.messages)
    if isinstance(example, PreferenceRecord):
        outputs = [*example.preferred_output, *example.non_preferred_output]
        return bool(example.input.tools) or _messages_use_tools([*example.input.messages, *outputs])
    return False


def _messages_use_tools(messages: Sequence[Message]) -> bool:
    return any(message.tool_calls or message.role == "tool" for message in messages)
