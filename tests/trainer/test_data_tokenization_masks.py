"""Loss masks read as a user expects: the text of every trained span, decoded.

A span is a maximal run of tokens whose label is not -100; the tests decode the spans and compare
them with the text of the example, so a wrong boundary by even one token shows.
"""

from __future__ import annotations

import pytest
from transformers import PreTrainedTokenizerFast

from kubetune_trainer.data import Message, MessagesRecord, PromptCompletionRecord, TextRecord
from kubetune_trainer.data.chat_template import DEFAULT_CHAT_TEMPLATE, ensure_chat_template
from kubetune_trainer.data.tokenization import (
    IGNORE_INDEX,
    TokenizedExample,
    TrainOnInputs,
    tokenize_example,
    tokenize_examples,
)
from kubetune_trainer.errors import InvalidInput

from .bpe_tokenizer import build_tokenizer

# Llama-2-chat's shape: BOS, [INST] markers, the answer after a space, EOS after each answer.
INST_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}<<SYS>>{{ m['content'] }}<</SYS>>"
    "{% elif m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
    "{% else %} {{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
)
# Marks the last message: a prefix of the conversation never renders as a prefix of the whole.
LAST_MARKING_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{% if loop.last %} (end){% endif %}\n{% endfor %}"
)

JOKE = MessagesRecord(
    messages=[
        Message(role="system", content="You are helpful."),
        Message(role="user", content="Tell me a joke."),
        Message(role="assistant", content="Why did the chicken cross the road?", weight=0),
        Message(role="user", content="Why?"),
        Message(role="assistant", content="To get to the other side."),
    ]
)


@pytest.fixture(scope="module")
def chatml() -> PreTrainedTokenizerFast:
    """A tokenizer with no chat template of its own: kubetune's default (ChatML) applies."""
    return build_tokenizer()


def trained_spans(tokenizer: PreTrainedTokenizerFast, example: TokenizedExample) -> list[str]:
    spans: list[list[int]] = []
    previous = IGNORE_INDEX
    for token, label in zip(example.input_ids, example.labels, strict=True):
        if label != IGNORE_INDEX:
            if previous == IGNORE_INDEX:
                spans.append([])
            spans[-1].append(token)
        previous = label
    return [str(tokenizer.decode(span)) for span in spans]


def tokenize(
    tokenizer: PreTrainedTokenizerFast,
    example: MessagesRecord | TextRecord | PromptCompletionRecord,
    train_on_inputs: TrainOnInputs = "auto",
    max_seq_length: int = 512,
) -> TokenizedExample:
    return tokenize_example(example, tokenizer, max_seq_length=max_seq_length, train_on_inputs=train_on_inputs)


@pytest.mark.parametrize("train_on_inputs", ["auto", False])
def test_only_assistant_answers_with_weight_are_trained(
    chatml: PreTrainedTokenizerFast, train_on_inputs: TrainOnInputs
) -> None:
    example = tokenize(chatml, JOKE, train_on_inputs)
    # The answer and its end-of-turn marker; the weight-0 answer and every prompt are masked.
    assert trained_spans(chatml, example) == ["To get to the other side.<|im_end|>\n"]
    rendered = chatml.apply_chat_template(
        [m.model_dump(exclude={"weight"}) for m in JOKE.messages], chat_template=DEFAULT_CHAT_TEMPLATE, tokenize=False
    )
    assert chatml.decode(example.input_ids) == rendered


def test_train_on_inputs_true_trains_everything_but_weight_0(chatml: PreTrainedTokenizerFast) -> None:
    spans = trained_spans(chatml, tokenize(chatml, JOKE, True))
    assert spans == [
        # The first token (<|im_start|>) is never a label: nothing predicts it.
        "system\nYou are helpful.<|im_end|>\n<|im_start|>user\nTell me a joke.<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\nTo get to the other side.<|im_end|>\n",
    ]


def test_weight_1_trains_a_user_message(chatml: PreTrainedTokenizerFast) -> None:
    example = MessagesRecord(
        messages=[Message(role="user", content="Say hi.", weight=1), Message(role="assistant", content="Hi.")]
    )
    assert trained_spans(chatml, tokenize(chatml, example)) == ["Say hi.<|im_end|>\n", "Hi.<|im_end|>\n"]


def test_a_models_own_template_is_used_and_its_answers_masked_right(chatml: PreTrainedTokenizerFast) -> None:
    tokenizer = build_tokenizer(chat_template=INST_TEMPLATE)
    example = tokenize(tokenizer, JOKE)
    assert str(tokenizer.decode(example.input_ids)).startswith(
        "<s><<SYS>>You are helpful.<</SYS>>[INST] Tell me a joke."
    )
    assert trained_spans(tokenizer, example) == ["To get to the other side.</s>"]
    assert not example.approximate_spans


def test_a_template_breaking_the_prefix_property_falls_back_to_searching() -> None:
    tokenizer = build_tokenizer(chat_template=LAST_MARKING_TEMPLATE)
    example = MessagesRecord(
        messages=[
            Message(role="user", content="Two plus two?"),
            Message(role="assistant", content="Four."),
            Message(role="user", content="And three plus three?"),
            Message(role="assistant", content="Six."),
        ]
    )
    tokenized = tokenize(tokenizer, example)
    assert tokenized.approximate_spans
    # Whether the space before an answer is its own token depends on the vocabulary.
    assert [span.strip() for span in trained_spans(tokenizer, tokenized)] == ["Four.", "Six."]
    dataset = tokenize_examples([example], tokenizer, max_seq_length=512, train_on_inputs="auto")
    assert dataset.approximate_spans == 1


@pytest.mark.parametrize("train_on_inputs", ["auto", True, False])
def test_text_is_trained_whole_with_eos_whatever_train_on_inputs(
    chatml: PreTrainedTokenizerFast, train_on_inputs: TrainOnInputs
) -> None:
    example = tokenize(chatml, TextRecord(text="The cat sat on the mat."), train_on_inputs)
    assert chatml.decode(example.input_ids) == "<s>The cat sat on the mat.</s>"
    assert trained_spans(chatml, example) == ["The cat sat on the mat.</s>"]


@pytest.mark.parametrize(
    ("train_on_inputs", "spans"),
    [("auto", ["Paris.</s>"]), (False, ["Paris.</s>"]), (True, ["Capital of France? Paris.</s>"])],
)
def test_a_prompt_is_masked_unless_train_on_inputs(
    chatml: PreTrainedTokenizerFast, train_on_inputs: TrainOnInputs, spans: list[str]
) -> None:
    example = tokenize(
        chatml, PromptCompletionRecord(prompt="Capital of France? ", completion="Paris."), train_on_inputs
    )
    assert chatml.decode(example.input_ids) == "<s>Capital of France? Paris.</s>"
    assert trained_spans(chatml, example) == spans


def test_long_examples_are_cut_and_counted_and_unlearnable_ones_dropped(chatml: PreTrainedTokenizerFast) -> None:
    long_text = TextRecord(text="the cat sat on the mat " * 20)
    long_prompt = PromptCompletionRecord(prompt="tell me " * 40, completion="Paris.")
    short = PromptCompletionRecord(prompt="Capital? ", completion="Paris.")
    dataset = tokenize_examples([long_text, long_prompt, short], chatml, max_seq_length=16, train_on_inputs="auto")
    # The text is cut to 16 tokens and kept; the prompt fills all 16, so no completion token is left.
    assert (dataset.truncated, dataset.without_labels) == (2, 1)
    assert dataset.lengths[0] == 16
    assert [trained_spans(chatml, example) for example in dataset.examples][1] == ["Paris.</s>"]


def test_the_default_template_is_chatml_and_set_only_when_missing() -> None:
    bare = build_tokenizer()
    assert ensure_chat_template(bare)
    assert bare.chat_template == DEFAULT_CHAT_TEMPLATE
    rendered = bare.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False)
    assert rendered == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    own = build_tokenizer(chat_template=INST_TEMPLATE)
    assert not ensure_chat_template(own)
    assert own.chat_template == INST_TEMPLATE


def test_a_template_refusing_the_conversation_is_invalid_input() -> None:
    no_system = (
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
        + DEFAULT_CHAT_TEMPLATE
    )
    with pytest.raises(InvalidInput) as raised:
        tokenize(build_tokenizer(chat_template=no_system), JOKE)
    assert raised.value.reason == "ChatTemplateRejected"
    assert "System role not supported" in raised.value.message


def test_a_template_refusing_only_partial_conversations_falls_back_to_searching() -> None:
    whole_only = (
        "{% if messages[-1]['role'] != 'assistant' and not add_generation_prompt %}"
        "{{ raise_exception('a conversation ends with an answer') }}{% endif %}" + DEFAULT_CHAT_TEMPLATE
    )
    tokenizer = build_tokenizer(chat_template=whole_only)
    example = tokenize(tokenizer, JOKE)
    assert example.approximate_spans
    assert trained_spans(tokenizer, example) == ["To get to the other side.<|im_end|>"]
