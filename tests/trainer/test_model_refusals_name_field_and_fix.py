"""Each model kubetune refuses is refused before any weight moves, as InvalidInput naming the field and the fix.

The repos sit in a real local HF cache and are read offline, as in an air-gapped cluster.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from transformers import AutoConfig

from kubetune_trainer import params
from kubetune_trainer.contract import ErrorClass, ModelSource, TemplateExpectations
from kubetune_trainer.errors import InvalidInput
from kubetune_trainer.hub import download_model

from .conftest import RefusedRepos
from .refused_models import LLAMA_405B, REFUSED, RefusedCase

OFFLINE = {"HF_HUB_OFFLINE": "1"}


@pytest.mark.parametrize("case", REFUSED, ids=[c.name for c in REFUSED])
def test_refused_model_names_its_reason_field_and_fix(
    case: RefusedCase, refused_repos: RefusedRepos, llama_template: TemplateExpectations
) -> None:
    source = ModelSource(repo=case.repo, template=llama_template)
    with pytest.raises(InvalidInput) as refused:
        download_model(source, cache_dir=refused_repos.hf_home / "hub", environ=OFFLINE)
    error = refused.value.to_job_error()
    assert error.error_class is ErrorClass.INVALID_INPUT
    assert error.reason == case.reason
    assert not error.retryable
    assert refused.value.field == case.spec_field
    assert error.hint is not None
    assert case.spec_field in error.hint, "the hint names the spec field to change"
    assert case.repo in error.message
    for word in case.words:
        assert word in error.message + error.hint


def test_a_405b_config_is_counted_on_meta_in_under_a_second() -> None:
    config = AutoConfig.for_model(**LLAMA_405B)
    params.count_parameters(AutoConfig.for_model(**{**LLAMA_405B, "num_hidden_layers": 1}))  # import the classes
    started = time.process_time()  # CPU time: the other work on a loaded machine does not count
    count = params.count_parameters(config)
    assert time.process_time() - started < 5.0  # materialized, 405B parameters would not fit at all
    assert count == 405_853_388_800


def test_missing_repo_and_revision_name_their_fields(tiny_hf_home: Path, llama_template: TemplateExpectations) -> None:
    cache = tiny_hf_home / "hub"
    with pytest.raises(InvalidInput) as missing_repo:
        download_model(ModelSource(repo="tiny-org/absent", template=llama_template), cache_dir=cache, environ=OFFLINE)
    assert missing_repo.value.reason == "ModelRepoNotFound"
    assert missing_repo.value.field == "spec.fromHfModel"
    assert "spec.fromHfModel" in (missing_repo.value.hint or "")

    source = ModelSource(repo="tiny-org/tiny-llama", revision="v2.0", template=llama_template)
    with pytest.raises(InvalidInput) as missing_revision:
        download_model(source, cache_dir=cache, environ=OFFLINE)
    assert missing_revision.value.reason == "RevisionNotFound"
    assert missing_revision.value.field == "spec.hfModelRevision"
    assert "'v2.0'" in missing_revision.value.message
    assert "spec.hfModelRevision" in (missing_revision.value.hint or "")


def test_a_repo_id_that_is_not_org_name_is_refused(tiny_hf_home: Path, llama_template: TemplateExpectations) -> None:
    source = ModelSource(repo="not a repo!!", template=llama_template)
    with pytest.raises(InvalidInput) as refused:
        download_model(source, cache_dir=tiny_hf_home / "hub", environ=OFFLINE)
    assert refused.value.reason == "InvalidRepoId"
    assert refused.value.field == "spec.fromHfModel"
