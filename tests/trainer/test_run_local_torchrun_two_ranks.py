"""`kubetune run --local --nproc-per-node 2`: the same job under torchrun, two gloo ranks on the CPU.

Both ranks train; only rank 0 reports (one set of stage lines on screen), saves, uploads and
writes the termination message.
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoModelForCausalLM

from kubetune_trainer.contract import Outcome
from kubetune_trainer.storage import MANIFEST_NAME
from kubetune_trainer.tiny_model import TinyModel

from .local_runs import STAGE_LINES, chat_spec, kubetune_run, model_card_lineage, write_chat_data, write_manifest


def test_two_ranks_train_and_only_rank_0_reports_and_writes(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    data = write_chat_data(tmp_path / "data")
    models = tmp_path / "models"
    manifest = write_manifest(
        tmp_path / "job.yaml",
        name="tiny-ddp",
        spec=chat_spec(tiny_llama.repo_id, data, output={"uri": str(models / "ddp-chat")}),
    )

    run = kubetune_run(
        manifest,
        workdir=tmp_path / "work",
        hf_home=tiny_hf_home,
        environ=offline_env,
        extra=("--nproc-per-node", "2"),
        in_process=False,
    )

    assert run.returncode == 0, run.output
    assert "torchrun --standalone --nproc-per-node=2 -m kubetune_trainer --config" in run.output
    assert run.stage_lines() == STAGE_LINES
    assert run.result.outcome is Outcome.SUCCEEDED
    lineage = model_card_lineage(models / "ddp-chat")
    assert lineage["metrics"]["eval_loss"] < 0.9 * lineage["metrics"]["eval_loss_before"]
    assert "worldSize: 2" in (models / "ddp-chat" / "README.md").read_text()
    # One destination, complete, and no second copy or staging leftovers from another rank.
    assert sorted(p.name for p in models.iterdir()) == ["ddp-chat"]
    assert (models / "ddp-chat" / MANIFEST_NAME).is_file()
    assert sorted(p.name for p in (tmp_path / "work" / "output").iterdir()) == ["tiny-llama-chat"]
    AutoModelForCausalLM.from_pretrained(models / "ddp-chat")
