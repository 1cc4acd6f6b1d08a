"""The three record formats a data file may hold, with Together's exact field names.

One line of JSONL (or one row of Parquet) is one example, in exactly one of these formats, and a
file holds one format throughout:

| format | fields | loss, with `trainOnInputs: auto` |
| --- | --- | --- |
| `text` | `text` | every token |
| `messages` | `messages: [{role, content, weight?}]` | assistant messages |
| `prompt_completion` | `prompt`, `completion` | the completion |
| `preference` | `input{messages, tools?}`, `preferred_output`, `non_preferred_output` | DPO: the two outputs |

A conversation may carry function calling (Together's and OpenAI's shape): `tools` beside
`messages`, `tool_calls` on assistant messages, and `tool` messages answering them by
`tool_call_id`; and reasoning (`reasoning` or `reasoning_content`) on assistant messages.

The models parse already-decoded JSON values; `validation.py` turns their errors into line-numbered
messages and adds the rules a single field cannot express (role order, an assistant message).
"""

from __future__ import annotations

import enum
import json
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue


class DataFormat(enum.StrEnum):
    TEXT = "text"
    MESSAGES = "messages"
    PROMPT_COMPLETION = "prompt_completion"
    PREFERENCE = "preference"


class Record(BaseModel):
    """Base of the record models: frozen, no unknown fields, no type coercion ("1" is not 1)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    format: ClassVar[DataFormat]
    fields: ClassVar[tuple[str, ...]]


class TextRecord(Record):
    """Plain text, trained on in full (Together's `general` format)."""

    format = DataFormat.TEXT
    fields = ("text",)

    text: str = Field(description="The text to learn.")


class PromptCompletionRecord(Record):
    """A prompt and its completion (Together's `instruction` format); the prompt is masked by default."""

    format = DataFormat.PROMPT_COMPLETION
    fields = ("prompt", "completion")

    prompt: str = Field(description="The input the model sees.")
    completion: str = Field(description="The output the model learns to produce after the prompt.")


Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")


class Strict(BaseModel):
    """Frozen, no unknown fields, no type coercion."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class FunctionCall(Strict):
    """The function an assistant calls: its name and its arguments as JSON text (OpenAI's shape)."""

    name: str = Field(min_length=1, description="The function called, one of the example's `tools`.")
    arguments: str = Field(description="The arguments, a JSON object written as a string.")


class ToolCall(Strict):
    """One call in an assistant message's `tool_calls`."""

    id: str = Field(min_length=1, description="Names the call; the `tool` message answering it repeats it.")
    type: Literal["function"] = Field("function", description="Always `function`.")
    function: FunctionCall = Field(description="What is called.")


class FunctionDefinition(Strict):
    """A function the model may call."""

    name: str = Field(min_length=1, description="The function's name.")
    description: str | None = Field(None, description="What the function does.")
    parameters: dict[str, JsonValue] | None = Field(None, description="JSON Schema of the arguments.")
    strict: bool | None = Field(None, description="OpenAI's strict-arguments flag; passed to the template.")


class Tool(Strict):
    """One entry of an example's `tools`."""

    type: Literal["function"] = Field("function", description="Always `function`.")
    function: FunctionDefinition = Field(description="The function offered.")


class Message(Strict):
    """One turn of a conversation."""

    role: Role = Field(description="system (first message only), user, assistant or tool.")
    content: str | None = Field(
        None, description="The text of the turn; an assistant message with `tool_calls` may leave it out."
    )
    weight: Annotated[int, Field(ge=0, le=1)] | None = Field(
        None,
        description="1: this message counts in the loss, 0: it does not; absent: the trainOnInputs default.",
    )
    tool_calls: list[ToolCall] | None = Field(None, description="Assistant only: the functions it calls.")
    tool_call_id: str | None = Field(None, description="Tool only: the call this message answers.")
    name: str | None = Field(None, description="Tool only: the function that answered (some templates show it).")
    reasoning: str | None = Field(None, description="Assistant only: its reasoning before the answer.")
    reasoning_content: str | None = Field(None, description="Assistant only: another name for `reasoning`.")

    @property
    def thinking(self) -> str | None:
        """The reasoning, under whichever name the file gave it."""
        return self.reasoning if self.reasoning is not None else self.reasoning_content

    def template_dict(self) -> dict[str, Any]:
        """The message as chat templates read it: tool-call arguments as objects, reasoning as `reasoning_content`."""
        rendered: dict[str, Any] = {"role": self.role, "content": self.content or ""}
        if self.tool_calls:
            rendered["tool_calls"] = [
                {
                    "id": call.id,
                    "type": call.type,
                    "function": {"name": call.function.name, "arguments": json.loads(call.function.arguments)},
                }
                for call in self.tool_calls
            ]
        if self.tool_call_id is not None:
            rendered["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            rendered["name"] = self.name
        if self.thinking is not None:
            rendered["reasoning_content"] = self.thinking
        return rendered


class MessagesRecord(Record):
    """A conversation (Together's `conversation` format), rendered with the model's chat template."""

    format = DataFormat.MESSAGES
    fields = ("messages", "tools")

    messages: list[Message] = Field(min_length=1, description="The turns, in order.")
    tools: list[Tool] | None = Field(None, description="Functions the assistant may call in this conversation.")


class PreferenceInput(Strict):
    """The conversation both outputs answer."""

    messages: list[Message] = Field(
        min_length=1, description="The turns before the answer; the last is not the assistant's."
    )
    tools: list[Tool] | None = Field(None, description="Functions the assistant may call.")


class PreferenceRecord(Record):
    """A preference pair (Together's `preference_openai` format), for trainingMethod dpo."""

    format = DataFormat.PREFERENCE
    fields = ("input", "preferred_output", "non_preferred_output")

    input: PreferenceInput = Field(description="The conversation so far.")
    preferred_output: list[Message] = Field(
        min_length=1, max_length=1, description="The better answer: one assistant message."
    )
    non_preferred_output: list[Message] = Field(
        min_length=1, max_length=1, description="The worse answer: one assistant message."
    )


Example = TextRecord | PromptCompletionRecord | MessagesRecord | PreferenceRecord
"""One validated training example, in the format its file uses."""

RECORD_TYPES: dict[
    DataFormat, type[TextRecord] | type[PromptCompletionRecord] | type[MessagesRecord] | type[PreferenceRecord]
] = {
    DataFormat.TEXT: TextRecord,
    DataFormat.MESSAGES: MessagesRecord,
    DataFormat.PROMPT_COMPLETION: PromptCompletionRecord,
    DataFormat.PREFERENCE: PreferenceRecord,
}

PREFERENCE_FORMATS = frozenset({DataFormat.PREFERENCE})
"""Formats only trainingMethod dpo trains; every other format is supervised (sft) data."""
