"""The chat template used when a model's tokenizer has none: ChatML.

ChatML is the format most open chat models were trained on (Qwen, many Llama and Mistral
fine-tunes), and it needs no special tokens to be unambiguous: each turn is
`<|im_start|>ROLE\\nCONTENT<|im_end|>\\n`, and a generation prompt is `<|im_start|>assistant\\n`.
When the tokenizer does not know `<|im_start|>`/`<|im_end|>` as tokens they are tokenized as plain
text, which still trains and generates; stop generation on the string `<|im_end|>` then.

The Saving stage writes the template used into the output tokenizer, so the trained model is
served with exactly the format it learned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""ChatML, the documented default (docs/data.md)."""


def ensure_chat_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Give `tokenizer` the default template when it has none; True when the default was set."""
    if tokenizer.chat_template:
        return False
    tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    return True
