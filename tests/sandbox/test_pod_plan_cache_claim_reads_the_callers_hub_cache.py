"""The pods' /cache/hf (the trainer's cacheDir, a hub cache) is the caller's HF_HOME/hub, as `--hf-home` promises."""

from __future__ import annotations

from pathlib import Path

from kubetune_sandbox.layout import SandboxLayout

from .rendered_pods import SINGLE_NODE, plan, pod_of, rendered


def test_the_trainer_cache_dir_holds_the_models_of_the_callers_hf_home(tmp_path: Path) -> None:
    hf_home = tmp_path / "hf"  # as `kubetune tiny-model --hf-home` and huggingface_hub lay it out
    snapshot = hf_home / "hub" / "models--tiny-org--tiny-llama" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    layout = SandboxLayout(tmp_path / "sandbox", hf_home=hf_home, cache_claim="hf-cache")
    layout.prepare()
    objects = rendered(SINGLE_NODE)
    trainer = plan(pod_of(objects["Job"], index=0), objects, layout=layout)

    cache_dir = Path(trainer.env["HF_HOME"])  # /cache/hf, the same path as runtime.cacheDir
    assert (cache_dir / "models--tiny-org--tiny-llama" / "snapshots" / ("0" * 40) / "config.json").is_file()


def test_a_link_left_by_an_earlier_run_to_another_cache_is_replaced(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    for home in (old, new):
        (home / "hub").mkdir(parents=True)
    SandboxLayout(tmp_path / "sandbox", hf_home=old, cache_claim="hf-cache").prepare()
    layout = SandboxLayout(tmp_path / "sandbox", hf_home=new, cache_claim="hf-cache")
    layout.prepare()
    assert (layout.volume("hf-cache") / "hf").resolve() == (new / "hub").resolve()
