"""Examples to token ids and labels, with the loss masks trainOnInputs and per-message weights ask for.

Labels are the input ids with -100 where a token does not count in the loss (the convention of
`torch.nn.CrossEntropyLoss(ignore_index=-100)` and of transformers). Which tokens count:

| format | `auto` | `true` | `false` |
| --- | --- | --- | --- |
| text | all | all | all (a text example has no input part, so there is nothing to mask) |
| prompt_completion | completion + EOS | all | completion + EOS |
| messages | assistant messages | all | assistant messages |

In a conversation an explicit `weight` wins: 0 masks the message, 1 trains it, whatever trainOnInputs
says. A trained assistant message covers its content and the template's end-of-turn text after it
(so the model learns to stop); the `<|im_start|>assistant\\n`-style header before it is template text,
trained only when trainOnInputs is true.
The first label of every example is -100: no token predicts it, in packed batches least of all.

Finding each message's tokens: the template is rendered once for the whole conversation and once per
prefix of it; when every prefix renders as a prefix of the whole (true of every mainstream template),
message k owns the characters between the render of messages[:k] (plus the generation prompt when k
is an assistant turn) and the render of messages[:k+1]. The whole conversation is tokenized once with
character offsets, and each token goes to the message its last character lies in. This is exact even
where BPE merges characters across a turn boundary, which defeats diffing token ids prefix by prefix.
Templates that break the prefix property (some rewrite earlier turns depending on later ones) fall back
to finding each message's content in the rendered text, in order; the count of such examples is
reported so the caller can warn.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from jinja2 import TemplateError

from ..errors import InvalidInput
from .chat_template import DEFAULT_CHAT_TEMPLATE
from .records import Example, Message, MessagesRecord, PromptCompletionRecord, TextRecord, Tool

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100
END_OF_TURN_MARKERS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")
"""End-of-turn texts of common templates, for templates that break the prefix property."""
TrainOnInputs = bool | Literal["auto"]


@dataclass(frozen=True)
class TokenizedExample:
    """Token ids and labels of one example, equally long; labels are -100 where the loss ignores a token."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool = False
    approximate_spans: bool = False

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def label_tokens(self) -> int:
        """Tokens that count in the loss."""
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


@dataclass
class TokenizedDataset:
    """A tokenized file and what the caller should warn about."""

    examples: list[TokenizedExample] = field(default_factory=list)
    truncated: int = 0
    """Examples cut to max_seq_length (their ends are lost)."""
    without_labels: int = 0
    """Examples left with no token in the loss (all masked, or cut before the first trained token); dropped."""
    approximate_spans: int = 0
    """Conversations whose template broke the prefix property (message spans found by searching)."""

    @property
    def lengths(self) -> list[int]:
        return [len(example) for example in self.examples]


def tokenize_example(
    example: Example,
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_seq_length: int,
    train_on_inputs: TrainOnInputs,
) -> TokenizedExample:
    """Token ids and labels of one example, cut to `max_seq_length` tokens (the start is kept)."""
    approximate = False
    if isinstance(example, TextRecord):
        ids = _with_eos(_encode(tokenizer, example.text, special=True), tokenizer)
        trained = [True] * len(ids)
    elif isinstance(example, PromptCompletionRecord):
        prompt = _encode(tokenizer, example.prompt, special=True)
        completion = _with_eos(_encode(tokenizer, example.completion, special=False), tokenizer)
        ids = prompt + completion
        trained = [train_on_inputs is True] * len(prompt) + [True] * len(completion)
    elif isinstance(example, MessagesRecord):
        ids, trained, approximate = tokenize_conversation(
            example.messages, tokenizer, tools=example.tools, train_on_inputs=train_on_inputs
        )
    else:
        raise TypeError("preference pairs are tokenized by data.preference_tokenization")
    truncated = len(ids) > max_seq_length
    ids, trained = ids[:max_seq_length], trained[:max_seq_length]
    labels = [token if keep else IGNORE_INDEX for token, keep in zip(ids, trained, strict=True)]
    if labels:
        labels[0] = IGNORE_INDEX
    return TokenizedExample(input_ids=ids, labels=labels, truncated=truncated, approximate_spans=approximate)


def tokenize_examples(
    examples: Sequence[Example],
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_seq_length: int,
    train_on_inputs: TrainOnInputs,
) -> TokenizedDataset:
    """Tokenize a whole file; examples with no trained token are dropped and counted."""
    dataset = TokenizedDataset()
    for example in examples:
        tokenized = tokenize_example(example, tokenizer, max_seq_length=max_seq_length, train_on_inputs=train_on_inputs)
        dataset.truncated += tokenized.truncated
        dataset.approximate_spans += tokenized.approximate_spans
        if tokenized.label_tokens == 0:
            dataset.without_labels += 1
            continue
        dataset.examples.append(tokenized)
    return dataset


def _encode(tokenizer: PreTrainedTokenizerBase, text: str, *, special: bool) -> list[int]:
    ids: list[int] = tokenizer(text, add_special_tokens=special)["input_ids"]
    return list(ids)


def _with_eos(ids: list[int], tokenizer: PreTrainedTokenizerBase) -> list[int]:
    eos = tokenizer.eos_token_id
    if isinstance(eos, int) and (not ids or ids[-1] != eos):
        return [*ids, eos]
    return ids


def _render(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict[str, Any]],
    *,
    generation_prompt: bool = False,
    tools: list[Any] | None = None,
) -> str:
    if not messages and not generation_prompt:
        return ""
    rendered = tokenizer.apply_chat_template(
        messages,
        tools=tools,
        chat_template=tokenizer.chat_template or DEFAULT_CHAT_TEMPLATE,
        add_generation_prompt=generation_prompt,
        tokenize=False,
    )
    if not isinstance(rendered, str):
        raise TypeError(f"the chat template rendered {type(rendered).__name__}, not text")
    return rendered


def template_tools(tools: Sequence[Tool] | None) -> list[Any] | None:
    """An example's tools as chat templates read them (OpenAI's shape), or None."""
    return [tool.model_dump(exclude_none=True) for tool in tools] if tools else None


def tokenize_conversation(
    records: Sequence[Message],
    tokenizer: PreTrainedTokenizerBase,
    *,
    tools: Sequence[Tool] | None,
    train_on_inputs: TrainOnInputs,
    only_last: bool = False,
) -> tuple[list[int], list[bool], bool]:
    """Token ids of the rendered conversation, which of them are trained, and whether spans were searched.

    `only_last`: only the last message trains (a preference pair's output), whatever the weights say.
    """
    messages = [message.template_dict() for message in records]
    offered = template_tools(tools)
    try:
        text = _render(tokenizer, messages, tools=offered)
    except TemplateError as refused:
        raise InvalidInput(
            f"the model's chat template refused a conversation: {refused}",
            reason="ChatTemplateRejected",
            hint="Shape the conversations the way the model's template expects (some take no system message), "
            "or pick a model whose chat template fits the data.",
        ) from refused
    try:
        spans = _prefix_spans(tokenizer, messages, text, tools=offered)
    except TemplateError:  # a template may refuse a partial conversation it would render whole
        spans = None
    approximate = spans is None
    if spans is None:
        spans = _searched_spans(tokenizer, records, text)
    encoding: Any = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(encoding["input_ids"])
    starts = [start for start, _ in spans]
    trained: list[bool] = []
    for first, after in encoding["offset_mapping"]:
        # A token belongs where its last character is: byte-level BPE glues the space before a word to it.
        char = max(first, after - 1)
        owner = bisect.bisect_right(starts, char) - 1
        if only_last:
            trained.append(owner == len(records) - 1 and char < spans[owner][1])
        elif owner >= 0 and char < spans[owner][1]:
            message = records[owner]
            # Tool results are what the environment wrote: never trained unless a weight asks.
            default = message.role == "assistant" or (train_on_inputs is True and message.role != "tool")
            trained.append(default if message.weight is None else message.weight == 1)
        else:  # template text between messages: headers, separators, BOS
            trained.append(train_on_inputs is True)
    return ids, trained, approximate


def _prefix_spans(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict[str, Any]],
    text: str,
    *,
    tools: list[Any] | None = None,
) -> list[tuple[int, int]] | None:
    spans: list[tuple[int, int]] = []
    previous = ""  # the render of messages[:index]: each render is reused as the next one's start
    for index, message in enumerate(messages):
        is_answer = message["role"] == "assistant"
        before = _render(tokenizer, messages[:index], generation_prompt=True, tools=tools) if is_answer else previous
        upto = text if index == len(messages) - 1 else _render(tokenizer, messages[: index + 1], tools=tools)
        if not (text.startswith(before) and text.startswith(upto)) or not len(previous) <= len(before) <= len(upto):
            return None
        # The span starts at the content: a role header before it is template text, like the generation prompt.
        # Reasoning comes before the content and is the assistant's own: then all after the prompt is.
        content_at = text.find(message["content"], len(before), len(upto)) if message["content"] else -1
        if is_answer and message.get("reasoning_content"):
            content_at = len(before)
        spans.append((content_at if content_at >= 0 else len(before), len(upto)))
        previous = upto
    return spans


def _searched_spans(tokenizer: PreTrainedTokenizerBase, records: Sequence[Message], text: str) -> list[tuple[int, int]]:
    # The end-of-turn marker right after an assistant message belongs to it: the model must learn to stop.
    markers = [str(marker) for marker in (tokenizer.eos_token, *END_OF_TURN_MARKERS) if marker]
    spans: list[tuple[int, int]] = []
    cursor = 0
    for message in records:
        content = message.content or ""
        start = text.find(content, cursor) if content else -1
        if start < 0:
            spans.append((cursor, cursor))
            continue
        end = start + len(content)
        thinking = message.thinking
        if message.role == "assistant" and thinking:
            reasoning_at = text.find(thinking, cursor, start)
            start = reasoning_at if reasoning_at >= 0 else start
        if message.role == "assistant":
            end += next((len(marker) for marker in markers if text.startswith(marker, end)), 0)
        spans.append((start, end))
        cursor = end
    return spans
