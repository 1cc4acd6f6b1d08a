"""Under FSDP2 the Saving stage writes the model from the ranks' shards: no rank ever holds the whole model.

Two gloo ranks (torchrun, CPU) load a 38M-parameter Llama (153 MB in fp32), shard it with FSDP2
and run the real Saving stage with 4 MiB output files. Each rank's RSS is sampled every 2 ms
during the stage; its growth over the RSS before the stage must stay within what one forward pass
of the sharded model takes (measured just before: the stage scores the model), two output files
(the gathered tensors and safetensors' copy while writing), one tensor and a margin: a limit
under half the model's size (the shard each rank already holds), which the old gather of the
whole model to rank 0 broke. The output holds what `save_pretrained` writes for the same
weights: the same index metadata and tensor names, the same tensors bit for bit, and
`from_pretrained` loads it.

With LoRA the adapter and the merged model are computed from the shards too; the merged
weights equal peft's `merge_and_unload` of the saved adapter on the base, bit for bit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from kubetune_trainer.peft_models import load_adapter
from kubetune_trainer.tiny_model import TinyModel, TinyShape, write_tiny_model

REPO_ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = Path(sys.executable).parent / "torchrun"
MIB = 1024 * 1024
OUTPUT_FILE_BYTES = 4 * MIB
MARGIN_BYTES = 16 * MIB
"""Room for the stage's own small allocations: the tokenizer saved and reloaded, the config, Python objects."""
BIG = TinyShape(
    hidden_size=384, intermediate_size=1024, num_hidden_layers=24, num_attention_heads=6, num_key_value_heads=2
)


def _run_ranks(
    model: TinyModel,
    work: Path,
    *,
    lora: str,
    train: bool,
    environ: dict[str, str],
    damage: str | None = None,
    fail_write: str | None = None,
) -> list[dict[str, Any]]:
    work.mkdir(parents=True)
    settings = {
        "repo_id": model.repo_id,
        "revision_sha": model.revision_sha,
        "snapshot": str(model.snapshot_path),
        "work_dir": str(work),
        "lora": lora,
        "train": train,
        "max_shard_bytes": OUTPUT_FILE_BYTES,
        "damage": damage,
        "fail_write": fail_write,
    }
    (work / "settings.json").write_text(json.dumps(settings), encoding="utf-8")
    env = {
        **environ,
        "OMP_NUM_THREADS": "1",
        # Large tensors come from mmap and go back to the system when freed: RSS follows live memory.
        "MALLOC_MMAP_THRESHOLD_": "131072",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), *sys.path]),
    }
    command = [str(TORCHRUN), "--standalone", "--nproc-per-node", "2", "-m", "tests.trainer.sharded_save_worker"]
    done = subprocess.run(
        [*command, str(work / "settings.json")],
        check=False,
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [json.loads((work / f"rank-{rank}.json").read_text(encoding="utf-8")) for rank in range(2)]
    for figures in ranks:
        # The process group's threads end in `teardown`, never at the interpreter's exit (docs/testing.md).
        left = [name for name in figures["threads_after_teardown"] if "gloo" in name]
        assert not left, f"rank {figures['rank']}'s process group outlived teardown: {left}"
    return ranks


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for path in sorted(folder.glob("*.safetensors")):
        tensors |= load_file(path)
    return tensors


def test_fsdp_ranks_save_the_model_within_two_output_files_of_memory(
    offline_env: dict[str, str], tmp_path: Path
) -> None:
    model = write_tiny_model(arch="llama", repo_id="tiny-org/big-llama", hf_home=tmp_path / "hf", shape=BIG)

    ranks = _run_ranks(model, tmp_path / "work", lora="none", train=False, environ=offline_env)

    model_bytes = ranks[0]["model_bytes"]
    assert model_bytes > 150 * 10**6
    largest_tensor = BIG.hidden_size * BIG.intermediate_size * 4
    for figures in ranks:
        # The stage scores the model (a forward: FSDP2 gathers a block or two at a time), writes (one output
        # file gathered, and safetensors' copy of it), reloads (one tensor at a time): never the whole model.
        limit = figures["forward_growth"] + 2 * OUTPUT_FILE_BYTES + largest_tensor + MARGIN_BYTES
        assert limit < 0.5 * model_bytes, "the limit must be under the shard a rank holds, and so the whole model"
        grew = figures["peak_saving"] - figures["before_saving"]
        print(
            f"rank {figures['rank']}: RSS after imports {figures['after_imports'] / MIB:.0f} MiB, before Saving "
            f"{figures['before_saving'] / MIB:.0f} MiB, peak growth {grew / MIB:.1f} MiB "
            f"(own shard {figures['own_shard_bytes'] / MIB:.0f} MiB, model {model_bytes / MIB:.0f} MiB, "
            f"one forward {figures['forward_growth'] / MIB:.0f} MiB, limit {limit / MIB:.0f} MiB), "
            f"Saving {figures['saving_seconds']:.1f} s"
        )
        assert figures["own_shard_bytes"] < 0.51 * model_bytes
        assert grew < limit, figures

    folder = tmp_path / "work" / "output" / "tiny-out"
    expected_folder = tmp_path / "save-pretrained"
    original = AutoModelForCausalLM.from_pretrained(model.snapshot_path)
    original.config.use_cache = True
    original.save_pretrained(expected_folder, max_shard_size=OUTPUT_FILE_BYTES)
    shards = sorted(p.name for p in folder.glob("*.safetensors"))
    assert len(shards) > 10
    index, expected_index = (
        json.loads((f / "model.safetensors.index.json").read_text(encoding="utf-8")) for f in (folder, expected_folder)
    )
    # The same tensors and sizes (transformers 5 puts lm_head first, so its files group tensors a little
    # differently; the streamed files keep module order).
    assert index["weight_map"].keys() == expected_index["weight_map"].keys()
    assert index["metadata"] == expected_index["metadata"], (index["metadata"], expected_index["metadata"])
    for path in folder.glob("*.safetensors"):
        assert max(t.numel() * t.element_size() for t in load_file(path).values()) <= OUTPUT_FILE_BYTES
    saved, expected = _tensors(folder), _tensors(expected_folder)
    assert saved.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(saved[name], tensor), name
    reloaded = AutoModelForCausalLM.from_pretrained(folder)
    for name, tensor in original.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], tensor), name


@pytest.mark.parametrize("lora", ["merged", "adapter"])
def test_fsdp_ranks_save_the_trained_adapter_and_its_exact_merge(
    lora: str, tiny_llama: TinyModel, offline_env: dict[str, str], tmp_path: Path
) -> None:
    _run_ranks(tiny_llama, tmp_path / "work", lora=lora, train=True, environ=offline_env)

    folder = tmp_path / "work" / "output" / "tiny-out"
    adapter_dir = folder / "adapter" if lora == "merged" else folder
    base = AutoModelForCausalLM.from_pretrained(tiny_llama.snapshot_path)
    adapted = load_adapter(base, adapter_dir)
    trained = load_file(adapter_dir / "adapter_model.safetensors")
    assert any(name.endswith("lora_B.weight") and bool(tensor.abs().sum() > 0) for name, tensor in trained.items())
    if lora == "adapter":
        assert not (folder / "model.safetensors").exists()
        return
    expected = adapted.merge_and_unload().state_dict()
    saved = _tensors(folder)
    assert saved.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(saved[name], tensor), name
    AutoModelForCausalLM.from_pretrained(folder)


@pytest.mark.parametrize(
    ("damage", "message", "other_told"),
    [
        # Found by the loss, after every collective: rank 0 fails the stage, the other rank's part is done.
        ("zero", "the saved weights are not the trained ones", False),
        # Found before the reload: the other rank is told, instead of waiting in a scatter rank 0 never joins.
        ("drop", "the saved weights lack ['model.layers.0.mlp.down_proj.weight']", True),
    ],
)
def test_a_damaged_output_fails_the_verification(  # noqa: PLR0917 (pytest fixtures)
    damage: str,
    message: str,
    other_told: bool,
    tiny_llama: TinyModel,
    offline_env: dict[str, str],
    tmp_path: Path,
) -> None:
    ranks = _run_ranks(tiny_llama, tmp_path / "work", lora="none", train=False, environ=offline_env, damage=damage)

    main, other = ranks
    assert main["refused"].startswith("OutputVerificationFailed: output verification failed: ")
    assert message in main["refused"]
    if other_told:
        told = "OutputVerificationFailed: output verification failed: rank 0 refused the saved output tiny-out."
        assert other["refused"].startswith(told), other["refused"]
    else:
        assert other["refused"] is None


@pytest.mark.parametrize("fail_write", ["model_file", "tokenizer"])
def test_when_rank_0_cannot_write_every_rank_fails_at_once_with_its_error(
    fail_write: str, tiny_llama: TinyModel, offline_env: dict[str, str], tmp_path: Path
) -> None:
    """A full disk on rank 0: the other rank stops at the same write with the same error (class, reason, hint),
    instead of waiting in its next gather for the process group's 30-minute timeout."""
    ranks = _run_ranks(
        tiny_llama, tmp_path / "work", lora="none", train=False, environ=offline_env, fail_write=fail_write
    )

    main, other = (figures["error"] for figures in ranks)
    assert main is not None, "rank 0's write did not fail"
    assert (main["class"], main["reason"], main["stage"]) == ("Internal", "NoSpaceLeft", "Saving")
    assert "No space left on device" in main["message"]
    assert other is not None, "the other rank finished the stage as if rank 0 had written"
    assert {key: other[key] for key in ("class", "reason", "hint", "stage", "retryable")} == {
        key: main[key] for key in ("class", "reason", "hint", "stage", "retryable")
    }
    assert other["message"].startswith("rank 0 failed while writing the output: OSError: ")
    assert "No space left on device" in other["message"]
