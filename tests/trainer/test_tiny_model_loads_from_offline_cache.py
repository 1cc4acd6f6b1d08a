"""`kubetune tiny-model` writes a model that loads by repo id from a real HF cache, offline."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import snapshot_download

from kubetune_operator.cli import main
from kubetune_trainer.tiny_model import ARCHES, markov_sentences, write_tiny_model

LOAD_BY_REPO_ID = """
import json, sys
from transformers import AutoModelForCausalLM, AutoTokenizer
out = {}
for repo in sys.argv[1:]:
    tokenizer = AutoTokenizer.from_pretrained(repo)
    model = AutoModelForCausalLM.from_pretrained(repo)
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "Kalo mi."}], tokenize=False,
                                         add_generation_prompt=True)
    ids = tokenizer(chat, return_tensors="pt")
    generated = model.generate(**ids, max_new_tokens=4, do_sample=False)
    out[repo] = {"type": model.config.model_type, "params": sum(p.numel() for p in model.parameters()),
                 "chat": chat, "new_tokens": generated.shape[1] - ids["input_ids"].shape[1],
                 "eos": model.generation_config.eos_token_id,
                 "im_end": tokenizer.convert_tokens_to_ids("<|im_end|>")}
print(json.dumps(out))
"""


def test_cli_writes_models_that_load_and_chat_offline_by_repo_id(
    tmp_path: Path, offline_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    hf_home = tmp_path / "hf"
    for arch in ARCHES:
        assert main(["tiny-model", "--arch", arch, "--repo-id", f"demo/tiny-{arch}", "--hf-home", str(hf_home)]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "Writing model shards" not in captured.err  # the command's own lines, no library progress bar
    for arch in ARCHES:
        assert f"repo:     demo/tiny-{arch}" in printed

    environ = {**offline_env, "HF_HOME": str(hf_home)}
    repos = [f"demo/tiny-{arch}" for arch in ARCHES]
    done = subprocess.run(
        [sys.executable, "-c", LOAD_BY_REPO_ID, *repos],
        check=False,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert [loaded[r]["type"] for r in repos] == list(ARCHES)
    for facts in loaded.values():
        assert 100_000 < facts["params"] < 400_000
        assert facts["chat"] == "<|im_start|>user\nKalo mi.<|im_end|>\n<|im_start|>assistant\n"
        assert facts["new_tokens"] >= 1
        assert facts["im_end"] in facts["eos"], "a chat turn's end stops generation"


def test_same_arguments_give_the_same_commit(tmp_path: Path) -> None:
    first = write_tiny_model(arch="qwen2", repo_id="a/b", hf_home=tmp_path / "one")
    again = write_tiny_model(arch="qwen2", repo_id="a/b", hf_home=tmp_path / "two")
    other_seed = write_tiny_model(arch="qwen2", repo_id="a/b", hf_home=tmp_path / "three", seed=1)
    assert first.revision_sha == again.revision_sha
    assert other_seed.revision_sha != first.revision_sha
    assert len(first.revision_sha) == 40


def test_cache_layout_is_what_snapshot_download_reads(tiny_hf_home: Path, tiny_llama: object) -> None:
    repo = tiny_hf_home / "hub" / "models--tiny-org--tiny-llama"
    main_ref = (repo / "refs" / "main").read_bytes()
    assert not main_ref.endswith(b"\n"), "a trailing newline breaks offline snapshot_download"
    for revision in ("main", "v1.0", main_ref.decode()):
        path = snapshot_download(
            "tiny-org/tiny-llama", revision=revision, cache_dir=tiny_hf_home / "hub", local_files_only=True
        )
        assert Path(path).name == main_ref.decode()
    snapshot = Path(path)
    assert sorted(p.name for p in snapshot.iterdir()) == [
        "chat_template.jinja",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert all((snapshot / name).is_symlink() for name in ("config.json", "model.safetensors"))
    config = json.loads((snapshot / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["hidden_size"] == 64
    assert config["num_hidden_layers"] == 2


def test_adapter_repo_names_its_base(tiny_adapter: object, tiny_hf_home: Path) -> None:
    snapshot = tiny_hf_home / "hub" / "models--tiny-org--tiny-llama-lora" / "snapshots"
    (only,) = list(snapshot.iterdir())
    assert sorted(p.name for p in only.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    config = json.loads((only / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "tiny-org/tiny-llama"
    assert config["peft_type"] == "LORA"


def test_markov_sentences_are_learnable_and_reproducible() -> None:
    sentences = markov_sentences(200, seed=3)
    assert sentences == markov_sentences(200, seed=3)
    words = " ".join(sentences).lower().replace(".", "").split()
    pairs = set(itertools.pairwise(words))
    # a word has 3 successors in the chain: far fewer distinct pairs than a uniform walk gives
    assert len(pairs) < 4 * len(set(words))
