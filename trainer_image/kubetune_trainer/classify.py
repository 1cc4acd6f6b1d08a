"""The one table that turns any exception a stage raises into a `JobError` and an exit code.

Domain errors (`errors.TrainerError`) already know their class, reason and hint: code that knows
the context (which repo, which field) raises those. Everything else lands here and is mapped by
what it means for the user, not by where it came from. The rows are checked top to bottom and the
first match wins, so a subclass comes before its base: `torch.OutOfMemoryError` before
RuntimeError, `GatedRepoError` before `RepositoryNotFoundError`, the network errors that are
OSErrors before the OSError row. Library classes are named by module and class, so this module
loads without torch, httpx or botocore.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Callable
from dataclasses import dataclass

from .contract import HOST_OUT_OF_MEMORY, HOST_OUT_OF_MEMORY_HINT, ErrorClass, JobError, Stage
from .errors import TrainerError

EXIT_CODES: dict[ErrorClass | None, int] = {
    None: 0,
    ErrorClass.INTERNAL: 1,
    ErrorClass.INVALID_INPUT: 2,
    ErrorClass.VALUE_ERROR: 3,
    ErrorClass.RUNTIME_ERROR: 4,
    ErrorClass.CUDA_OOM: 5,
}
"""Process exit code per error class, so a shell (or `kubectl logs`) can tell them apart too."""

Match = Callable[[BaseException], bool]


@dataclass(frozen=True)
class Rule:
    """One row of the table: which exceptions, and what the user is told."""

    matches: Match
    error_class: ErrorClass
    reason: str
    hint: str
    """What to change; `{job_uid}` is filled in."""
    retryable: bool = False


def _class_names(exc: BaseException) -> set[str]:
    return {f"{cls.__module__}.{cls.__qualname__}" for cls in type(exc).__mro__}


def is_a(*qualified_names: str) -> Match:
    """Matches instances of any of the classes named `module.Class` (subclasses included)."""
    wanted = set(qualified_names)
    return lambda exc: bool(wanted & _class_names(exc))


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an exception carries: httpx(2), requests, huggingface_hub, aiohttp or botocore."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(response, dict):  # botocore.exceptions.ClientError
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if status is None:
        status = getattr(exc, "status", None)  # aiohttp.ClientResponseError
    return status if isinstance(status, int) else None


def _all(*checks: Match) -> Match:
    return lambda exc: all(check(exc) for check in checks)


def _status(*codes: int, server_errors: bool = False) -> Match:
    def check(exc: BaseException) -> bool:
        status = http_status(exc)
        return status is not None and (status in codes or (server_errors and status >= 500))

    return check


def _message_has(*fragments: str) -> Match:
    return lambda exc: any(fragment in str(exc) for fragment in fragments)


def _errno(*codes: int) -> Match:
    return lambda exc: isinstance(exc, OSError) and exc.errno in codes


HTTP_ERRORS = is_a(
    "huggingface_hub.errors.HfHubHTTPError",
    "httpx.HTTPStatusError",
    "httpx2.HTTPStatusError",
    "requests.exceptions.HTTPError",
    "botocore.exceptions.ClientError",
    "aiohttp.client_exceptions.ClientResponseError",
)

NETWORK_ERRORS = is_a(
    "httpx.TransportError",
    "httpx2.TransportError",
    "requests.exceptions.ConnectionError",
    "requests.exceptions.Timeout",
    "botocore.exceptions.ConnectionError",
    "botocore.exceptions.HTTPClientError",
    "aiohttp.client_exceptions.ClientConnectionError",
    "aiohttp.client_exceptions.ClientPayloadError",
    "builtins.ConnectionError",
    "builtins.TimeoutError",
)

OOM_HINT = (
    "Lower hyperparameters.maxSeqLength or hyperparameters.batchSize, enable lora (lora.enabled), or pick a "
    "template with training.gradientCheckpointing or more or bigger GPUs."
)
RETRY_HINT = "Retried automatically; if it persists, report it with the job UID {job_uid}."
TOKEN_HINT = (
    "Set hfTokenSecretRef to a Secret holding a Hugging Face token that can read the repo "
    "(and accept the repo's terms on its page, for a gated model), or check the model repo is the right one "
    "(status.resolved.modelRepo: spec.fromHfModel, the template's hfModel, or a fromCheckpoint job's model)."
)

RULES: tuple[Rule, ...] = (
    Rule(
        is_a("torch.OutOfMemoryError"),
        ErrorClass.CUDA_OOM,
        "OutOfMemory",
        # Forward and backward passes raise their own OutOfMemory (training.oom): an OOM reaching the
        # table ran out elsewhere, where smaller micro-batches are never tried, so the hint must not promise it.
        "Out of memory outside the forward and backward passes (loading the model, the optimizer's update, "
        f"evaluating validationFile or verifying the output), which hyperparameters.autoBatchOnOOM does not retry. "
        f"{OOM_HINT}",
    ),
    Rule(
        lambda exc: (
            isinstance(exc, MemoryError)
            or (isinstance(exc, RuntimeError) and "DefaultCPUAllocator: can't allocate memory" in str(exc))
        ),
        ErrorClass.CUDA_OOM,
        HOST_OUT_OF_MEMORY,
        HOST_OUT_OF_MEMORY_HINT,
    ),
    Rule(
        is_a("safetensors._safetensors_rust.SafetensorError"),
        ErrorClass.RUNTIME_ERROR,
        "CorruptWeights",
        "Verify the checkpoint is complete: re-upload the model repo's .safetensors files (one is truncated or "
        "not safetensors).",
    ),
    Rule(is_a("huggingface_hub.errors.GatedRepoError"), ErrorClass.INVALID_INPUT, "GatedRepo", TOKEN_HINT),
    Rule(
        is_a("huggingface_hub.errors.RepositoryNotFoundError"),
        ErrorClass.INVALID_INPUT,
        "RepoNotFound",
        "Check the repo id in status.resolved.modelRepo (from spec.fromHfModel, the template's hfModel, or a "
        "fromCheckpoint job's model) or the hf:// data URI; a private repo also needs hfTokenSecretRef.",
    ),
    Rule(
        is_a("huggingface_hub.errors.RevisionNotFoundError"),
        ErrorClass.INVALID_INPUT,
        "RevisionNotFound",
        "Set hfModelRevision to a branch, tag or commit that exists in the repo.",
    ),
    Rule(
        is_a("huggingface_hub.errors.LocalEntryNotFoundError"),
        ErrorClass.INTERNAL,
        "HubUnavailable",
        "The hub could not be reached and the file is not cached. " + RETRY_HINT,
        retryable=True,
    ),
    Rule(
        _all(is_a("huggingface_hub.errors.HfHubHTTPError"), _status(401, 403)),
        ErrorClass.INVALID_INPUT,
        "Unauthorized",
        TOKEN_HINT,
    ),
    Rule(
        _all(HTTP_ERRORS, _status(401, 403)),
        ErrorClass.INVALID_INPUT,
        "AccessDenied",
        "The server refused access: check the URI (trainingFile, validationFile, output.uri, checkpoint.uri) and "
        "its credentials: the S3 credentials Secret (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), or "
        "hfTokenSecretRef for hf:// URIs.",
    ),
    Rule(
        _all(HTTP_ERRORS, _status(404)),
        ErrorClass.INVALID_INPUT,
        "NotFound",
        "Check the URI (trainingFile, validationFile, output.uri or fromHfModel) names something that exists.",
    ),
    Rule(
        _all(HTTP_ERRORS, _status(408, 429, server_errors=True)),
        ErrorClass.INTERNAL,
        "ServiceUnavailable",
        "The hub or object store answered with a server error. " + RETRY_HINT,
        retryable=True,
    ),
    Rule(
        lambda exc: (
            NETWORK_ERRORS(exc) or _errno(errno.ECONNRESET, errno.ETIMEDOUT, errno.ECONNREFUSED, errno.EPIPE)(exc)
        ),
        ErrorClass.INTERNAL,
        "NetworkFailure",
        "A connection to the hub or object store failed or timed out. " + RETRY_HINT,
        retryable=True,
    ),
    Rule(
        is_a("torch.distributed.DistError"),
        ErrorClass.INTERNAL,
        "DistributedCommunicationFailed",
        "The training processes lost each other (a peer died or the network between nodes failed). " + RETRY_HINT,
        retryable=True,
    ),
    Rule(
        _errno(errno.ENOSPC, errno.EDQUOT),
        ErrorClass.INTERNAL,
        "NoSpaceLeft",
        "A disk filled up: raise the template's ephemeral storage, or the size of the PVC behind output.uri or "
        "checkpoint.uri.",
    ),
    Rule(
        lambda exc: isinstance(exc, ValueError | AssertionError),
        ErrorClass.VALUE_ERROR,
        "InvalidConfiguration",
        "Check the model is a CausalLM whose weights match its config.json, and the hyperparameters are in range.",
    ),
    Rule(
        _all(lambda exc: isinstance(exc, RuntimeError), _message_has("size mismatch", "ignore_mismatched_sizes")),
        ErrorClass.RUNTIME_ERROR,
        "WeightShapeMismatch",
        "Verify the checkpoint is complete and was saved from the config.json it ships with.",
    ),
    Rule(
        lambda exc: isinstance(exc, RuntimeError | ArithmeticError | LookupError),
        ErrorClass.RUNTIME_ERROR,
        "ComputationFailed",
        "Verify the checkpoint is complete and the tokenizer matches the model.",
    ),
)
"""Checked in order; an exception no row matches is Internal, reason Unexpected, retried."""

UNEXPECTED = Rule(lambda exc: True, ErrorClass.INTERNAL, "Unexpected", RETRY_HINT, retryable=True)


_URL_SECRETS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?:[^/@\s]*@)?(?P<rest>[^?\s'\"]*)(?:\?[^\s'\"]*)?", re.I)


_HEADER_VALUE = re.compile(r"(?P<lead>header value:?\s*)b?(?P<quote>['\"]).*?(?P=quote)", re.I)
_BEARER = re.compile(r"(?P<lead>\bBearer\s+)[^\s'\"\\]+", re.I)


def redact_urls(text: str) -> str:
    """Drop user:password@ and query strings (presigned signatures, tokens) from URLs in a library's message.

    Header values go too: httpx and http.client quote a header they refuse in full, and a token
    Secret ending in a newline makes `Authorization: Bearer <token>` such a header.
    """
    text = _URL_SECRETS.sub(lambda m: m.group("scheme") + m.group("rest"), text)
    text = _HEADER_VALUE.sub(lambda m: m.group("lead") + "<redacted>", text)
    return _BEARER.sub(lambda m: m.group("lead") + "<redacted>", text)


def rule_for(exc: BaseException) -> Rule:
    """The first row matching `exc` (not for domain errors, which classify themselves)."""
    return next((rule for rule in RULES if rule.matches(exc)), UNEXPECTED)


def exit_code_for(error: JobError | None) -> int:
    return EXIT_CODES[None if error is None else error.error_class]


def classify(exc: BaseException, *, stage: Stage | None, job_uid: str) -> JobError:
    """The user-facing error for `exc`, raised during `stage`."""
    if isinstance(exc, TrainerError):
        return exc.to_job_error(stage)
    rule = rule_for(exc)
    return JobError(
        error_class=rule.error_class,
        reason=rule.reason,
        message=redact_urls(f"{type(exc).__name__}: {exc}"),
        hint=rule.hint.format(job_uid=job_uid),
        stage=stage,
        retryable=rule.retryable,
    )
