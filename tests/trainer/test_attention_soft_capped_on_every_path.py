"""Gemma 2 soft-caps its attention logits, which neither sdpa nor a flash kernel computes: the trainer's attention
takes the model (it refused it until 2026-12-05) and caps the logits on every path, packed rows, padded rows (DPO's,
`packing: false`) and rows of one sequence, as transformers' own eager Gemma 2 does; and a tiny Gemma 2 trains from
a manifest to a saved model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from kubetune_trainer.contract import AttentionKernel, Outcome
from kubetune_trainer.tiny_model import write_tiny_model
from kubetune_trainer.training.attention import ORDER, implementation_name, use_attention

from .local_runs import chat_spec, kubetune_run, write_chat_data, write_manifest

TOLERANCE = 1e-5


def _gemma2(*, softcap: float | None = 2.0) -> PreTrainedModel:
    config = AutoConfig.for_model(
        "gemma2", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, vocab_size=100, attn_logit_softcapping=softcap, sliding_window=6,
        query_pre_attn_scalar=16, use_cache=False,
    )  # fmt: skip
    torch.manual_seed(0)
    model: PreTrainedModel = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(6)  # logits large enough that the cap changes them
    return model.eval()


def _pair() -> tuple[PreTrainedModel, PreTrainedModel]:
    reference = _gemma2()
    assert reference.config._attn_implementation == "eager"  # transformers' own Gemma 2 attention
    ours = _gemma2()
    use_attention(ours, AttentionKernel.SDPA)
    return reference, ours


def test_no_implementation_name_reads_as_one_transformers_checks() -> None:
    for kernel in ORDER:
        name = implementation_name(kernel)
        assert not any(word in name for word in ("sdpa", "flex_attention", "flash_attention")), name
    model = _gemma2()
    use_attention(model, AttentionKernel.SDPA)  # was: ValueError, Gemma 2 has no sdpa
    assert model.config._attn_implementation == implementation_name(AttentionKernel.SDPA)


def test_padded_rows_and_single_rows_are_soft_capped_as_transformers_does() -> None:
    reference, ours = _pair()
    ids = torch.randint(1, 100, (2, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 8:] = 0  # the second row is padded after 8 tokens
    with torch.no_grad():
        expected, got = (
            reference(input_ids=ids, attention_mask=mask).logits,
            ours(input_ids=ids, attention_mask=mask).logits,
        )
        torch.testing.assert_close(got[0], expected[0], atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(got[1, :8], expected[1, :8], atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(
            ours(input_ids=ids[:1]).logits, reference(input_ids=ids[:1]).logits, atol=TOLERANCE, rtol=0
        )
        # The cap matters at these logits: uncapped attention gives other logits.
        uncapped = _gemma2(softcap=None)
        assert (uncapped(input_ids=ids[:1]).logits - expected[:1]).abs().max() > 100 * TOLERANCE


def test_a_packed_row_is_each_example_alone_soft_capped() -> None:
    reference, ours = _pair()
    first = torch.randint(1, 100, (1, 9), generator=torch.Generator().manual_seed(2))
    second = torch.randint(1, 100, (1, 11), generator=torch.Generator().manual_seed(3))
    packed = torch.cat([first, second], dim=1)
    positions = torch.cat([torch.arange(9), torch.arange(11)]).unsqueeze(0)
    with torch.no_grad():
        got = ours(input_ids=packed, position_ids=positions).logits
        torch.testing.assert_close(got[:, :9], reference(input_ids=first).logits, atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(got[:, 9:], reference(input_ids=second).logits, atol=TOLERANCE, rtol=0)


@pytest.fixture(scope="module")
def gemma2_hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("gemma2-hf-home")
    write_tiny_model(arch="gemma2", repo_id="tiny-org/tiny-gemma2", hf_home=home)
    return home


def test_a_tiny_gemma2_trains_from_a_manifest_to_a_saved_model(
    gemma2_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    data = write_chat_data(tmp_path / "data", train=16, validation=4)
    spec = chat_spec("tiny-org/tiny-gemma2", data)
    spec["hyperparameters"] |= {"nEpochs": 1, "batchSize": 8}
    manifest = write_manifest(tmp_path / "job.yaml", name="tiny-gemma2", spec=spec)
    run = kubetune_run(manifest, workdir=tmp_path / "work", hf_home=gemma2_hf_home, environ=offline_env)
    assert run.returncode == 0, run.output
    assert run.result.outcome is Outcome.SUCCEEDED
    saved = tmp_path / "work" / "output" / "tiny-gemma2-chat"
    assert (saved / "model.safetensors").is_file()
    assert os.path.getsize(saved / "model.safetensors") > 0
