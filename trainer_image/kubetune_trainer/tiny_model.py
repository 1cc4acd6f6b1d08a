"""Tiny random Llama, Qwen2 and Mistral models with a trained tokenizer, written into a local HF cache.

`kubetune tiny-model` and the tests use these so the whole pipeline runs with no download: a
model of about 0.2M parameters (hidden 64, 2 layers) saved as safetensors, a byte-level BPE
tokenizer trained here, a ChatML chat template and a generation config, published into
`<hf_home>/hub` under a commit id derived from the files (the same arguments give the same
commit).

The tokenizer's corpus is a low-entropy Markov chain over pseudo-words, and
`markov_sentences` samples more of the same chain: uniformly random words have an
irreducible loss, so training on them proves nothing, while this chain is learnable in a
few dozen steps.
"""

from __future__ import annotations

import json
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from peft import LoraConfig
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    DeepseekV3Config,
    Gemma2Config,
    Gemma3TextConfig,
    GenerationConfig,
    LlamaConfig,
    MistralConfig,
    MixtralConfig,
    Phi3Config,
    PretrainedConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen3Config,
)

from .hf_cache import check_repo_id, publish_folder
from .peft_models import wrap_with_adapter

Arch = Literal["llama", "qwen2", "mistral", "mixtral", "gemma2", "gemma3_text", "phi3", "qwen3", "deepseek_v3"]
ARCHES: tuple[Arch, ...] = ("llama", "qwen2", "mistral")
"""The dense architectures every tiny-model test runs on."""
EXTRA_ARCHES: tuple[Arch, ...] = ("mixtral", "gemma2", "gemma3_text", "phi3", "qwen3", "deepseek_v3")
"""Built on request, the catalog's other families: Mixtral, a mixture of experts (4 experts, 2 a token); Gemma 2
(soft-capped attention logits, sliding-window layers); Gemma 3's text model (query and key norms, sliding
layers); Phi-3 (fused qkv and gate_up projections); Qwen3 (query and key norms). And one no template names:
DeepSeek V3 (compressed attention with query and key heads wider than the values, a dense first layer, then
4 routed experts, 2 a token, and a shared one)."""

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>")
CHAT_TEMPLATE = (
    "{% if tools %}<|im_start|>system\n"
    "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}\n\n{% endif %}"
    "# Tools\n<tools>\n{% for tool in tools %}{{ tool | tojson }}\n{% endfor %}</tools><|im_end|>\n"
    "{% endif %}"
    "{% for message in messages %}"
    "{% if tools and loop.first and message['role'] == 'system' %}"
    "{% elif message['role'] == 'tool' %}"
    "<|im_start|>tool\n<tool_response>\n{{ message['content'] }}\n</tool_response><|im_end|>\n"
    "{% else %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message.get('reasoning_content') %}<think>\n{{ message['reasoning_content'] }}\n</think>\n{% endif %}"
    "{{ message['content'] }}"
    "{% for call in message.get('tool_calls') or [] %}<tool_call>\n"
    "{{ {'name': call['function']['name'], 'arguments': call['function']['arguments']} | tojson }}\n</tool_call>"
    "{% endfor %}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""ChatML, as Qwen and many fine-tunes use: role headers and an end marker per message; tools, tool
calls, tool results and reasoning the way Qwen 2.5/3 render them (a conversation without them renders
as plain ChatML)."""

_SYLLABLES = ("ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "ve", "zu", "da", "fe", "gi", "ho", "ju", "wa")
_CHAIN_SEED = 20240611  # fixed: every caller samples the same chain, whatever its own seed
_WORDS = 240
_SUCCESSORS = 3
_SUCCESSOR_WEIGHTS = (0.75, 0.2, 0.05)


@dataclass(frozen=True)
class TinyModel:
    """A repo published into the cache: its id, commit and the snapshot folder holding its files."""

    repo_id: str
    revision_sha: str
    snapshot_path: Path


@dataclass(frozen=True)
class TinyShape:
    """Dimensions of a tiny model; the defaults build in well under a second on a CPU."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 1024
    vocab_size: int = 768


class _Chain:
    def __init__(self) -> None:
        rng = random.Random(_CHAIN_SEED)
        words: list[str] = []
        while len(words) < _WORDS:
            word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 3)))
            if word not in words:
                words.append(word)
        self.words = words
        self.successors = {w: rng.sample(words, _SUCCESSORS) for w in words}

    def sentence(self, rng: random.Random) -> str:
        word = rng.choice(self.words)
        out = [word]
        for _ in range(rng.randint(4, 14)):
            word = rng.choices(self.successors[word], weights=_SUCCESSOR_WEIGHTS)[0]
            out.append(word)
        return " ".join(out).capitalize() + "."


_CHAIN = _Chain()


def markov_sentences(count: int, *, seed: int = 0) -> list[str]:
    """`count` sentences from the fixed word chain the tiny tokenizers were trained on."""
    rng = random.Random(seed)
    return [_CHAIN.sentence(rng) for _ in range(count)]


def write_tiny_model(
    *,
    arch: Arch,
    repo_id: str,
    hf_home: Path,
    seed: int = 0,
    shape: TinyShape | None = None,
    revisions: tuple[str, ...] = ("main",),
) -> TinyModel:
    """Build a tiny random `arch` model with tokenizer and chat template and publish it as `repo_id`."""
    check_repo_id(repo_id)
    if arch not in ARCHES + EXTRA_ARCHES:
        raise ValueError(f"arch {arch!r} is not one of {', '.join(ARCHES + EXTRA_ARCHES)}")
    shape = shape or TinyShape()
    with tempfile.TemporaryDirectory(prefix="kubetune-tiny-") as scratch:
        folder = Path(scratch)
        save_tiny_model(folder, arch=arch, seed=seed, shape=shape)
        published = publish_folder(folder, repo_id=repo_id, hub_cache=hf_home / "hub", revisions=revisions)
    return TinyModel(repo_id, published.revision_sha, published.snapshot_path)


def save_tiny_model(folder: Path, *, arch: Arch, seed: int = 0, shape: TinyShape | None = None) -> None:
    """Write the model, tokenizer, chat template and generation config into `folder` (no cache)."""
    shape = shape or TinyShape()
    tokenizer = train_tokenizer(vocab_size=shape.vocab_size)
    tokenizer.save_pretrained(folder)
    ids = {name: _token_id(tokenizer, name) for name in ("<s>", "</s>", "<pad>", "<|im_end|>")}
    config = _config(arch, shape=shape, vocab_size=len(tokenizer), ids=ids)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    # Ending a chat turn ends generation too, as in chat models on the hub.
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=ids["<s>"], eos_token_id=[ids["</s>"], ids["<|im_end|>"]], pad_token_id=ids["<pad>"]
    )
    model.save_pretrained(folder)


def _token_id(tokenizer: PreTrainedTokenizerFast, token: str) -> int:
    found = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(found, int):
        raise TypeError(f"{token} maps to {found!r}, not one id")
    return found


def train_tokenizer(*, vocab_size: int = 768) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on the word chain, with ChatML specials and chat template."""
    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [*markov_sentences(2000, seed=_CHAIN_SEED), "system user assistant", *_CHAIN.words]
    core.train_from_iterator(corpus, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=core,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        model_max_length=1024,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _config(arch: Arch, *, shape: TinyShape, vocab_size: int, ids: dict[str, int]) -> PretrainedConfig:
    common: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": shape.hidden_size,
        "intermediate_size": shape.intermediate_size,
        "num_hidden_layers": shape.num_hidden_layers,
        "num_attention_heads": shape.num_attention_heads,
        "num_key_value_heads": shape.num_key_value_heads,
        "max_position_embeddings": shape.max_position_embeddings,
        "bos_token_id": ids["<s>"],
        "eos_token_id": ids["</s>"],
        "pad_token_id": ids["<pad>"],
        "tie_word_embeddings": False,
    }
    if arch == "llama":
        return LlamaConfig(**common)
    if arch == "qwen2":
        return Qwen2Config(**common, use_sliding_window=False)
    if arch == "mixtral":
        return MixtralConfig(**common, sliding_window=None, num_local_experts=4, num_experts_per_tok=2)
    head_dim = shape.hidden_size // shape.num_attention_heads
    if arch == "gemma2":
        return Gemma2Config(**common, head_dim=head_dim, sliding_window=16)
    if arch == "gemma3_text":
        return Gemma3TextConfig(**common, head_dim=head_dim, sliding_window=16)
    if arch == "phi3":
        return Phi3Config(**common)
    if arch == "qwen3":
        return Qwen3Config(**common, head_dim=head_dim)
    if arch == "deepseek_v3":
        # As in DeepSeek's own configs, every head has its keys and values (expanded from the compressed latent).
        common["num_key_value_heads"] = shape.num_attention_heads
        return DeepseekV3Config(
            **common, moe_intermediate_size=shape.intermediate_size // 2, n_routed_experts=4, num_experts_per_tok=2,
            n_shared_experts=1, first_k_dense_replace=1, n_group=1, topk_group=1, q_lora_rank=None,
            kv_lora_rank=shape.hidden_size // 2, qk_nope_head_dim=head_dim, qk_rope_head_dim=head_dim // 2,
            v_head_dim=head_dim,
        )  # fmt: skip
    return MistralConfig(**common, sliding_window=None)


def write_tiny_adapter(
    *,
    base: TinyModel,
    repo_id: str,
    hf_home: Path,
    seed: int = 0,
    r: int = 4,
    alpha: int = 8,
    target_modules: tuple[str, ...] = ("q_proj", "v_proj"),
) -> TinyModel:
    """A LoRA adapter repo for `base` (adapter_config.json naming `base.repo_id`), published as `repo_id`.

    Both LoRA matrices are random (peft's default zero B would make merging a no-op), so a
    test can tell a merged model from its base.
    """
    check_repo_id(repo_id)
    model = AutoModelForCausalLM.from_pretrained(base.snapshot_path)
    torch.manual_seed(seed)
    lora = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=0.0,
        target_modules=list(target_modules),
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    peft_model = wrap_with_adapter(model, lora)
    with tempfile.TemporaryDirectory(prefix="kubetune-adapter-") as scratch:
        folder = Path(scratch)
        peft_model.save_pretrained(str(folder))
        # peft writes the local base path; a hub adapter names its base repo, and the card would
        # carry the scratch path into the commit id.
        (folder / "README.md").unlink(missing_ok=True)
        config_path = folder / "adapter_config.json"
        adapter_config = json.loads(config_path.read_text(encoding="utf-8"))
        adapter_config["base_model_name_or_path"] = base.repo_id
        config_path.write_text(json.dumps(adapter_config, indent=2, sort_keys=True), encoding="utf-8")
        published = publish_folder(folder, repo_id=repo_id, hub_cache=hf_home / "hub")
    return TinyModel(repo_id, published.revision_sha, published.snapshot_path)
