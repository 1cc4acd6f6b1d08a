"""Every row of the classification table, hit by the real exception the libraries raise.

Each case builds (or provokes) the exception of torch, safetensors, huggingface_hub, httpx,
requests, botocore, aiohttp or the OS, and checks what a user would see: the error class,
reason, whether it is retried, the exit code, and a hint naming what to change.
"""

from __future__ import annotations

import errno
import http.server
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import botocore.exceptions  # type: ignore[import-untyped]
import httpx
import httpx2
import pytest
import requests
import safetensors.torch
import torch
import torch.distributed
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from kubetune_trainer.classify import EXIT_CODES, RULES, UNEXPECTED, classify, exit_code_for, rule_for
from kubetune_trainer.contract import ErrorClass, Stage
from kubetune_trainer.errors import CheckpointInvalid, ComputationFailed, InfrastructureFailure, OutOfMemory

C = ErrorClass


def raised(action: Callable[[], object]) -> BaseException:
    """The exception `action` really raises."""
    try:
        action()
    except BaseException as exc:
        return exc
    raise AssertionError("expected an exception")


def hub_error(cls: type[HfHubHTTPError], status: int) -> HfHubHTTPError:
    request = httpx2.Request("GET", "https://huggingface.co/api/models/org/name")
    return cls(f"{status} Client Error", response=httpx2.Response(status, request=request))


def httpx_status(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "https://data.example/train.jsonl?X-Amz-Signature=secret")
    response = httpx.Response(status, request=request)
    return raised(response.raise_for_status)  # type: ignore[return-value]


def requests_status(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    response.url = "https://data.example/train.jsonl"
    return raised(response.raise_for_status)  # type: ignore[return-value]


def s3_client_error(status: int, code: str) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject"
    )


def aiohttp_status(status: int) -> aiohttp.ClientResponseError:
    info = aiohttp.RequestInfo(URL("http://s3.local/bucket/key"), "PUT", CIMultiDictProxy(CIMultiDict()))
    return aiohttp.ClientResponseError(info, (), status=status, message="server error")


def truncated_safetensors() -> BaseException:
    whole = safetensors.torch.save({"weight": torch.zeros(4, 4)})
    return raised(lambda: safetensors.torch.load(whole[: len(whole) // 2]))


@dataclass(frozen=True)
class Case:
    name: str
    exc: BaseException
    error_class: ErrorClass
    reason: str
    retryable: bool
    hint_names: str
    """Something the hint must name: the field or the thing to change."""


CASES = [
    Case(
        "cuda oom",
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        C.CUDA_OOM,
        "OutOfMemory",
        False,
        "autoBatchOnOOM",
    ),
    Case(
        "host allocation",
        raised(lambda: torch.empty(1 << 50, dtype=torch.uint8)),
        C.CUDA_OOM,
        "HostOutOfMemory",
        False,
        "resources.memory",
    ),
    Case("python MemoryError", MemoryError(), C.CUDA_OOM, "HostOutOfMemory", False, "resources.memory"),
    Case(
        "truncated safetensors",
        truncated_safetensors(),
        C.RUNTIME_ERROR,
        "CorruptWeights",
        False,
        "checkpoint is complete",
    ),
    Case("gated repo", hub_error(GatedRepoError, 403), C.INVALID_INPUT, "GatedRepo", False, "hfTokenSecretRef"),
    Case(
        "repo not found", hub_error(RepositoryNotFoundError, 404), C.INVALID_INPUT, "RepoNotFound", False, "fromHfModel"
    ),
    Case(
        "revision not found",
        hub_error(RevisionNotFoundError, 404),
        C.INVALID_INPUT,
        "RevisionNotFound",
        False,
        "hfModelRevision",
    ),
    Case(
        "offline, not cached", LocalEntryNotFoundError("no cache"), C.INTERNAL, "HubUnavailable", True, "job UID uid-1"
    ),
    Case("hub 401", hub_error(HfHubHTTPError, 401), C.INVALID_INPUT, "Unauthorized", False, "hfTokenSecretRef"),
    Case("hub 403", hub_error(HfHubHTTPError, 403), C.INVALID_INPUT, "Unauthorized", False, "hfTokenSecretRef"),
    Case("https 401", httpx_status(401), C.INVALID_INPUT, "AccessDenied", False, "trainingFile"),
    Case(
        "s3 403", s3_client_error(403, "AccessDenied"), C.INVALID_INPUT, "AccessDenied", False, "AWS_SECRET_ACCESS_KEY"
    ),
    Case("hub 404 file", hub_error(HfHubHTTPError, 404), C.INVALID_INPUT, "NotFound", False, "trainingFile"),
    Case("s3 404", s3_client_error(404, "NoSuchBucket"), C.INVALID_INPUT, "NotFound", False, "output.uri"),
    Case("hub 500", hub_error(HfHubHTTPError, 500), C.INTERNAL, "ServiceUnavailable", True, "uid-1"),
    Case("https 503", httpx_status(503), C.INTERNAL, "ServiceUnavailable", True, "uid-1"),
    Case("https 429", httpx_status(429), C.INTERNAL, "ServiceUnavailable", True, "uid-1"),
    Case("requests 502", requests_status(502), C.INTERNAL, "ServiceUnavailable", True, "uid-1"),
    Case("s3 500", s3_client_error(500, "InternalError"), C.INTERNAL, "ServiceUnavailable", True, "uid-1"),
    Case("aiohttp 503", aiohttp_status(503), C.INTERNAL, "ServiceUnavailable", True, "uid-1"),
    Case("httpx connect timeout", httpx.ConnectTimeout("timed out"), C.INTERNAL, "NetworkFailure", True, "uid-1"),
    Case("httpx2 read timeout", httpx2.ReadTimeout("timed out"), C.INTERNAL, "NetworkFailure", True, "uid-1"),
    Case("requests connection", requests.ConnectionError("reset"), C.INTERNAL, "NetworkFailure", True, "uid-1"),
    Case("requests timeout", requests.Timeout("slow"), C.INTERNAL, "NetworkFailure", True, "uid-1"),
    Case(
        "botocore endpoint",
        botocore.exceptions.EndpointConnectionError(endpoint_url="http://s3.local"),
        C.INTERNAL,
        "NetworkFailure",
        True,
        "uid-1",
    ),
    Case(
        "botocore read timeout",
        botocore.exceptions.ReadTimeoutError(endpoint_url="http://s3.local"),
        C.INTERNAL,
        "NetworkFailure",
        True,
        "uid-1",
    ),
    Case("aiohttp disconnected", aiohttp.ServerDisconnectedError(), C.INTERNAL, "NetworkFailure", True, "uid-1"),
    Case("aiohttp timeout", aiohttp.ServerTimeoutError("slow"), C.INTERNAL, "NetworkFailure", True, "uid-1"),
    Case(
        "connection reset",
        ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
        C.INTERNAL,
        "NetworkFailure",
        True,
        "uid-1",
    ),
    Case(
        "OSError ECONNRESET",
        OSError(errno.ECONNRESET, "Connection reset by peer"),
        C.INTERNAL,
        "NetworkFailure",
        True,
        "uid-1",
    ),
    Case(
        "nccl / gloo",
        torch.distributed.DistBackendError("NCCL communicator was aborted"),
        C.INTERNAL,
        "DistributedCommunicationFailed",
        True,
        "uid-1",
    ),
    Case(
        "disk full",
        OSError(errno.ENOSPC, "No space left on device"),
        C.INTERNAL,
        "NoSpaceLeft",
        False,
        "ephemeral storage",
    ),
    Case(
        "ValueError", ValueError("Invalid learning rate: -1"), C.VALUE_ERROR, "InvalidConfiguration", False, "CausalLM"
    ),
    Case("AssertionError", AssertionError("shapes"), C.VALUE_ERROR, "InvalidConfiguration", False, "hyperparameters"),
    Case(
        "load_state_dict shape",
        raised(lambda: torch.nn.Linear(2, 2).load_state_dict({"weight": torch.zeros(3, 3), "bias": torch.zeros(2)})),
        C.RUNTIME_ERROR,
        "WeightShapeMismatch",
        False,
        "config.json",
    ),
    Case(
        "token id past vocab",
        raised(lambda: torch.nn.Embedding(4, 2)(torch.tensor([9]))),
        C.RUNTIME_ERROR,
        "ComputationFailed",
        False,
        "tokenizer",
    ),
    Case("KeyError", KeyError("added_tokens"), C.RUNTIME_ERROR, "ComputationFailed", False, "tokenizer"),
    Case("ZeroDivisionError", ZeroDivisionError(), C.RUNTIME_ERROR, "ComputationFailed", False, "checkpoint"),
    Case("anything else", Exception("surprise"), C.INTERNAL, "Unexpected", True, "uid-1"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_each_exception_gets_its_class_reason_retry_hint_and_exit_code(case: Case) -> None:
    error = classify(case.exc, stage=Stage.TRAINING, job_uid="uid-1")

    assert (error.error_class, error.reason, error.retryable) == (case.error_class, case.reason, case.retryable)
    assert error.hint is not None
    assert case.hint_names in error.hint
    assert error.stage is Stage.TRAINING
    assert exit_code_for(error) == EXIT_CODES[case.error_class]


def test_every_row_of_the_table_is_reached_by_a_case() -> None:
    reached = {id(rule_for(case.exc)) for case in CASES}
    assert {id(rule) for rule in (*RULES, UNEXPECTED)} <= reached


def test_subclasses_are_checked_before_their_bases() -> None:
    assert isinstance(torch.OutOfMemoryError("x"), RuntimeError)
    assert issubclass(GatedRepoError, RepositoryNotFoundError)
    assert classify(torch.OutOfMemoryError("x"), stage=None, job_uid="u").error_class is C.CUDA_OOM
    assert classify(hub_error(GatedRepoError, 403), stage=None, job_uid="u").reason == "GatedRepo"


@pytest.mark.parametrize(
    ("exc", "error_class", "code"),
    [
        (CheckpointInvalid("bad shapes", reason="CheckpointShapeMismatch", hint="h"), C.VALUE_ERROR, 3),
        (ComputationFailed("nan", reason="NonFiniteLoss", hint="h"), C.RUNTIME_ERROR, 4),
        (OutOfMemory("oom", reason="OutOfMemoryAtOneExample", hint="h"), C.CUDA_OOM, 5),
        (InfrastructureFailure("down", reason="UploadFailed", hint="h"), C.INTERNAL, 1),
    ],
)
def test_domain_errors_keep_their_own_reason(exc: Exception, error_class: ErrorClass, code: int) -> None:
    error = classify(exc, stage=Stage.SAVING, job_uid="u")
    assert (error.error_class, error.reason, exit_code_for(error)) == (error_class, exc.reason, code)  # type: ignore[attr-defined]
    assert error.retryable is (error_class is C.INTERNAL)


def test_urls_in_library_messages_lose_their_query_strings() -> None:
    error = classify(httpx_status(503), stage=None, job_uid="u")
    assert "X-Amz-Signature" not in error.message
    assert "secret" not in error.message
    assert "https://data.example/train.jsonl" in error.message


def test_a_refused_header_never_shows_the_token_it_carries() -> None:
    """A token Secret written with `echo` ends in a newline; httpx then refuses the header, quoting it whole."""
    sentinel = "hf_SENTINELtokenValue123"
    with socketserver.TCPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            failure = raised(
                lambda: httpx2.Client().get(
                    f"http://127.0.0.1:{server.server_address[1]}/", headers={"authorization": f"Bearer {sentinel}\n"}
                )
            )
        finally:
            server.shutdown()
    assert sentinel in str(failure)  # the library's own message does carry it

    shown = classify(failure, stage=Stage.DATA_DOWNLOAD, job_uid="u")
    assert sentinel not in shown.message
    assert "<redacted>" in shown.message
    for message in (f"Invalid header value b'AWS4-HMAC-SHA256 Credential={sentinel}/x\\n'", f"Bearer {sentinel}"):
        assert sentinel not in classify(ValueError(message), stage=None, job_uid="u").message


def test_an_oom_outside_forward_and_backward_does_not_promise_smaller_micro_batches() -> None:
    """Forward and backward raise OutOfMemory themselves; a bare torch OOM ran out where nothing is retried."""
    error = classify(torch.OutOfMemoryError("CUDA out of memory"), stage=Stage.TRAINING, job_uid="u")
    assert error.hint is not None
    assert "does not retry" in error.hint
    assert "maxSeqLength" in error.hint
    assert "to retry in smaller micro-batches" not in error.hint
