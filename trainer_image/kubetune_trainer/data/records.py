"""The three record formats a data file may hold, with Together's exact field names.

One line of JSONL (or one row of Parquet) is one example, in exactly one of these formats, and a
file holds one format throughout:

| format | fields | loss, with `trainOnInputs: auto` |
| --- | --- | --- |
| `text` | `text` | every token |
| `messages` | `messages: [{role, content, weight?}]` | assistant messages |
| `prompt_completion` | `prompt`, `completion` | the completion |

The models parse already-decoded JSON values; `validation.py` turns their errors into line-numbered
messages and adds the rules a single field cannot express (role order, an assistant message).
"""

from __future__ import annotations

import enum
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field


class DataFormat(enum.StrEnum):
    TEXT = "text"
    MESSAGES = "messages"
    PROMPT_COMPLETION = "prompt_completion"


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


Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")


class Message(BaseModel):
    """One turn of a conversation."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    role: Role = Field(description="system (first message only), user or assistant.")
    content: str = Field(description="The text of the turn.")
    weight: Annotated[int, Field(ge=0, le=1)] | None = Field(
        None,
        description="1: this message counts in the loss, 0: it does not; absent: the trainOnInputs default.",
    )


class MessagesRecord(Record):
    """A conversation (Together's `conversation` format), rendered with the model's chat template."""

    format = DataFormat.MESSAGES
    fields = ("messages",)

    messages: list[Message] = Field(min_length=1, description="The turns, in order.")


Example = TextRecord | PromptCompletionRecord | MessagesRecord
"""One validated training example, in the format its file uses."""

RECORD_TYPES: dict[DataFormat, type[TextRecord] | type[PromptCompletionRecord] | type[MessagesRecord]] = {
    DataFormat.TEXT: TextRecord,
    DataFormat.MESSAGES: MessagesRecord,
    DataFormat.PROMPT_COMPLETION: PromptCompletionRecord,
}
