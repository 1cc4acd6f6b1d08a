"""A small byte-level BPE tokenizer trained in-process, for the data tests (no download, ~0.1 s).

It knows `<s>`, `</s>`, `<pad>` and the ChatML markers as special tokens, adds `<s>` in front of
encoded text like Llama's tokenizer does, and has no chat template unless one is given, so tests
exercise both a model's own template and kubetune's default.
"""

from __future__ import annotations

import random

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "on",
    "mat",
    "what",
    "is",
    "two",
    "plus",
    "answer",
    "four",
    "hello",
    "world",
    "you",
    "are",
    "helpful",
    "assistant",
    "capital",
    "of",
    "france",
    "paris",
    "tell",
    "me",
    "joke",
    "why",
    "did",
    "chicken",
    "cross",
    "road",
    "to",
    "get",
    "other",
    "side",
    "system",
    "user",
]


def _corpus(seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(12)) + "." for _ in range(400)]


def build_tokenizer(*, chat_template: str | None = None, vocab_size: int = 512) -> PreTrainedTokenizerFast:
    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(_corpus(), trainer=trainer)
    bos = core.token_to_id("<s>")
    core.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", bos)]),
        ]
    )
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=core,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        model_max_length=2048,
    )
    tokenizer.chat_template = chat_template
    return tokenizer
