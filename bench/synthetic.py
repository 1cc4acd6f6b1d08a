"""Synthetic jobs for the benches: chat data, random Llama models, and a local Hugging Face cache to publish into.

One home for what every bench builds before it measures anything, so that two benches that say they
train "the same kind of model on the same kind of data" do. Nothing here imports torch or
transformers at import time: a bench's parent process imports this module and stays free of the ML
stack (its children's peak RSS is their own); the functions that build a model import it when called.
"""

# ruff: noqa: PLC0415

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "trainer_image") not in sys.path:
    sys.path.insert(0, str(ROOT / "trainer_image"))


# --------------------------------------------------------------------------- chat data


def chat(prompt: str, answer: str) -> dict[str, Any]:
    """One chat line of the messages format: a user turn and the assistant turn the loss is on."""
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}


def sentence_chats(
    count: int, *, rng: random.Random, sentences: list[str], tokens: tuple[int, int] = (30, 500)
) -> list[dict[str, Any]]:
    """`count` chats spread uniformly over `tokens` in length (about 12 a sentence), a third of each the prompt."""
    chats = []
    for _ in range(count):
        target = rng.randint(*tokens)
        sentence_count = max(2, round(target / 12))
        prompt_count = max(1, sentence_count // 3)
        picked = [sentences[rng.randrange(len(sentences))] for _ in range(sentence_count)]
        chats.append(chat(" ".join(picked[:prompt_count]), " ".join(picked[prompt_count:])))
    return chats


def word_chats(count: int, *, seed: int = 3, words: tuple[int, int] = (40, 400)) -> list[dict[str, Any]]:
    """`count` chats of a uniform spread of lengths in `words`, a third of each the prompt."""
    from kubetune_trainer.tiny_model import markov_sentences  # no torch needed: the chain is plain python

    rng = random.Random(seed)
    chats = []
    for index in range(count):
        picked: list[str] = []
        target = rng.randint(*words)
        sentences = markov_sentences(80, seed=seed * 1000 + index)
        while len(picked) < target:
            picked.extend(sentences.pop().split())
        picked = picked[:target]
        half = max(1, len(picked) // 3)
        chats.append(chat(" ".join(picked[:half]), " ".join(picked[half:])))
    return chats


def write_jsonl(path: Path, lines: Iterable[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")


def token_examples(
    count: int, *, rng: random.Random, lengths: tuple[int, int], vocab_size: int
) -> list[dict[str, list[int]]]:
    """Already-tokenized examples of random ids (never the special ids below 8); 20-50% of each is prompt."""
    examples = []
    for _ in range(count):
        length = rng.randint(*lengths)
        prompt = max(1, int(length * rng.uniform(0.2, 0.5)))
        ids = [rng.randrange(8, vocab_size) for _ in range(length)]
        examples.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return examples


# --------------------------------------------------------------------------- random models


def random_llama(
    *,
    seed: int = 0,
    device: str | None = None,
    dtype: Any = None,
    attn_implementation: str | None = None,
    **config: Any,
) -> Any:
    """A LlamaForCausalLM of `config` (LlamaConfig's keywords) with transformers' seeded random init."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    options: dict[str, Any] = {}
    if dtype is not None:
        options["dtype"] = dtype
    if attn_implementation is not None:
        options["attn_implementation"] = attn_implementation
    torch.manual_seed(seed)
    with torch.device(device or "cpu"):
        return AutoModelForCausalLM.from_config(LlamaConfig(**config), **options)


def save_random_llama(
    folder: Path,
    *,
    hidden: int,
    intermediate: int,
    layers: int,
    heads: int,
    kv_heads: int,
    tokenizer_vocab: int,
    vocab_size: int = 0,
    max_positions: int = 2048,
    tie: bool,
    seed: int,
    on_gpu: bool = False,
) -> int:
    """A tokenizer of `tokenizer_vocab` (the tiny models' BPE, ChatML specials) and a random Llama, into `folder`.

    The model's vocabulary is `vocab_size` or the tokenizer's, whichever is larger; on a GPU it is built
    there and saved in bf16. Returns the model's vocabulary size.
    """
    import torch

    from kubetune_trainer.tiny_model import train_tokenizer

    tokenizer: Any = train_tokenizer(vocab_size=tokenizer_vocab)
    tokenizer.save_pretrained(folder)
    vocab = max(vocab_size, len(tokenizer))
    model = random_llama(
        seed=seed,
        device="cuda" if on_gpu else "cpu",
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=tie,
    )
    (model.to(torch.bfloat16) if on_gpu else model).save_pretrained(folder)
    return vocab


# --------------------------------------------------------------------------- a local Hugging Face cache


def offline_environment(hf_home: Path) -> dict[str, str]:
    """The environment of a child that runs the project (operator, trainer, sandbox) against `hf_home`, offline."""
    paths = [str(ROOT / "operator"), str(ROOT / "trainer_image")]
    if (ROOT / "sandbox").is_dir():
        paths.append(str(ROOT / "sandbox"))
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")]),
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
    }


def publish_tiny_llama(hf_home: Path, *, repo_id: str, shape: dict[str, int]) -> None:
    """A random Llama of `shape` (TinyShape's fields) with tokenizer and chat template, published in `hf_home`'s hub
    cache as `repo_id`, as `kubetune run --local` finds a downloaded model. Built in a child, so the caller's
    process never imports the ML stack."""
    code = (
        "from pathlib import Path; from kubetune_trainer.tiny_model import TinyShape, write_tiny_model; "
        f"write_tiny_model(arch='llama', repo_id={repo_id!r}, hf_home=Path({str(hf_home)!r}), "
        f"shape=TinyShape(**{shape!r}))"
    )
    subprocess.run([sys.executable, "-c", code], env=offline_environment(hf_home), check=True)
