"""Two nodes without a shared filesystem checkpoint to an `s3://` location, and each resumes from the store.

Each node has its own work directory, as pods on different machines do; every rank writes its
shards and RNG states there and copies them to the store itself, and rank 0 copies the marker
last, once every rank's files are in. Every rank's files must reach the store, since no node sees
another's work directory. Two torchrun agents on loopback (static rendezvous, one
gloo process each) play the two nodes, against a moto S3 server.

- The first run ends with every checkpoint in the store holding both ranks' shard files and
  RNG states, all in its marker.
- A retry in two fresh work directories resumes from `tiny:8` on both nodes and finishes.
- A run after a saved model was kept in the store (`saved_output`) resumes at Upload on both
  nodes: rank 0 fetches and checks the copy, and the other node follows its answer.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from kubetune_trainer.contract import Outcome, TrainerConfig
from kubetune_trainer.tiny_model import TinyModel

from .preemption_runs import TORCHRUN, result_of, resumable_job
from .s3_checkpoints import assert_checkpoints_complete_in_store, delete_kept_model, on_s3, stored_keys

LOCATION = "s3://checkpoints/runs"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _node_config(model: TinyModel, *, hf_home: Path, work_dir: Path, resume_from: str | None) -> TrainerConfig:
    config = resumable_job(model, hf_home=hf_home, work_dir=work_dir, checkpoints=work_dir, resume_from=resume_from)
    return on_s3(config, LOCATION)


def _run_two_nodes(configs: list[TrainerConfig], *, environ: dict[str, str]) -> list[subprocess.CompletedProcess[str]]:
    port = _free_port()
    agents = []
    for node, config in enumerate(configs):
        path = Path(config.runtime.work_dir) / "job.json"
        path.write_text(config.to_json(), encoding="utf-8")
        command = [
            str(TORCHRUN), "--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(node),
            "--master-addr", "127.0.0.1", "--master-port", str(port),
            "-m", "kubetune_trainer", "--config", str(path),
        ]  # fmt: skip
        agents.append(subprocess.Popen(command, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    ended = []
    for agent in agents:
        out, err = agent.communicate(timeout=300)
        ended.append(subprocess.CompletedProcess(agent.args, agent.returncode, out, err))
    return ended


def test_two_nodes_checkpoint_every_rank_to_s3_and_resume_from_it(
    s3_bucket: tuple[dict[str, str], Any, str],
    tiny_llama: TinyModel,
    tiny_hf_home: Path,
    offline_env: dict[str, str],
    tmp_path: Path,
) -> None:
    aws, client, bucket = s3_bucket
    environ = {**offline_env, **aws, "OMP_NUM_THREADS": "1", "PYTHONPATH": ":".join(sys.path)}
    first = [
        _node_config(tiny_llama, hf_home=tiny_hf_home, work_dir=tmp_path / f"first-node{n}", resume_from=None)
        for n in range(2)
    ]

    ended = _run_two_nodes(first, environ=environ)

    assert [e.returncode for e in ended] == [0, 0], ended[1].stderr[-3000:] + ended[0].stderr[-3000:]
    assert result_of(first[0]).outcome is Outcome.SUCCEEDED
    keys = stored_keys(client, bucket)
    # Each node copied its own rank's shard file and RNG states; rank 0 the metadata and the marker.
    shards = {"shards/.metadata", "shards/__0_0.distcp", "shards/__1_0.distcp"}
    assert_checkpoints_complete_in_store(client, bucket, keys, expected={"rng-0.pt", "rng-1.pt", "COMPLETE", *shards})

    # The first run kept its saved model in the store too: a retry would upload it without training.
    # Removed here, so that the retry resumes from the checkpoint (the kept copy is checked below).
    delete_kept_model(client, bucket, keys)
    retry = [
        _node_config(tiny_llama, hf_home=tiny_hf_home, work_dir=tmp_path / f"retry-node{n}", resume_from="tiny:8")
        for n in range(2)
    ]

    resumed = _run_two_nodes(retry, environ=environ)

    assert [e.returncode for e in resumed] == [0, 0], resumed[1].stderr[-3000:] + resumed[0].stderr[-3000:]
    assert result_of(retry[0]).resumed_from_step == 8

    again = [
        _node_config(tiny_llama, hf_home=tiny_hf_home, work_dir=tmp_path / f"again-node{n}", resume_from="tiny")
        for n in range(2)
    ]

    uploaded = _run_two_nodes(again, environ=environ)

    assert [e.returncode for e in uploaded] == [0, 0], uploaded[1].stderr[-3000:] + uploaded[0].stderr[-3000:]
    for node in uploaded:
        assert "resuming at Upload" in node.stderr
        assert "resumed from" not in node.stderr, "a node trained although the model was kept"
    assert result_of(again[0]).output is not None
