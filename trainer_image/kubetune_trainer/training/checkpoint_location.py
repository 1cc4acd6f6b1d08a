"""Where a job's checkpoints live, and which checkpoint `runtime.resumeFrom` names.

Every job has a directory of its own, holding its `step-<N>` checkpoints:

- The operator says where: `runtime.checkpointRoot` holds one `<root>/<job>/` per job (its
  `checkpoint.uri`, or `<defaultCheckpointUri>/<namespace>`), this job's and the one
  `fromCheckpoint` names alike. Configs without it (written before it existed) fall back to
  deriving the directory from `checkpointUri` as follows, which misfires when a job is named
  like the last segment of a shared root (job `runs`, `s3://b/runs`):
- The operator's default location is already per job, `<defaultCheckpointUri>/<namespace>/<job>`:
  a location whose last segment is the job's own name is that job's directory, and another
  job's directory is its sibling (`.../<namespace>/<other>`).
- Any other location (`spec.checkpoint.uri`) is a root shared by jobs: `<uri>/<job>/`. Jobs
  naming the same root never overwrite each other, and `fromCheckpoint: <other>` finds the
  other job's checkpoints when both name that root.
- Without a location they stay in `<workDir>/checkpoints/<job>/`, which a pod does not outlive.

Inside a job's directory each FineTuneJob has its own, named by its uid: `<root>/<job>/<uid>/step-<N>`.
A job deleted and re-created under the same name gets a new uid, so it never resumes (or trips
over) the checkpoints of the job that had its name before. A reference names the uid as
`<job>@<uid>[:<step>]`; the operator writes it for `fromCheckpoint` (it knows the source job's
uid), and a retry's own `<job>[:<step>]` means this job's uid. A `<job>` of another job with no
uid (a hand-written local config) reads the layout from before uids, `<root>/<job>/step-<N>`.

A path, `file://` and `pvc://claim/path` (the claim mounted under `data.pvcMountRoot`) are read
and written directly. Under `s3://bucket/prefix` checkpoints are written to the work directory
first and copied out complete (`training.remote`), and fetched back from there to resume.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import InvalidInput

RESUME_FIELD = "fromCheckpoint"
_REFERENCE = re.compile(
    r"^(?P<job>[a-z0-9]([-a-z0-9.]*[a-z0-9])?)(@(?P<uid>[A-Za-z0-9][-A-Za-z0-9]{0,63}))?(:(?P<step>[0-9]+))?$"
)


@dataclass(frozen=True)
class ResumeReference:
    """`<job>` (its newest complete checkpoint) or `<job>:<step>` (exactly that one), optionally `<job>@<uid>`."""

    job: str
    step: int | None = None
    uid: str | None = None
    """The FineTuneJob's uid: which of the jobs ever named `job` wrote the checkpoints."""

    @classmethod
    def parse(cls, text: str) -> ResumeReference:
        found = _REFERENCE.match(text)
        if found is None:
            raise InvalidInput(
                f"{RESUME_FIELD} {text!r} is not a checkpoint reference.",
                reason="InvalidCheckpointReference",
                field=RESUME_FIELD,
                hint="Write <job> for that job's newest checkpoint, or <job>:<step> for one step.",
            )
        step = found.group("step")
        return cls(job=found.group("job"), step=int(step) if step is not None else None, uid=found.group("uid"))

    def __str__(self) -> str:
        named = self.job if self.uid is None else f"{self.job}@{self.uid}"
        return named if self.step is None else f"{named}:{self.step}"


@dataclass(frozen=True)
class CheckpointPlace:
    """One job's checkpoint directory: on this machine, and (for an object store) its remote copy."""

    local: Path
    remote: str | None = None
    """`s3://bucket/prefix/<job>` when checkpoints are copied to an object store."""


def job_checkpoints(
    location: str | None,
    *,
    job: str,
    own_job: str,
    work_checkpoints: Path,
    pvc_mount_root: str,
    root: str | None = None,
    uid: str | None = None,
) -> CheckpointPlace:
    """The checkpoint directory of `job`, seen from `own_job` whose checkpoint location is `location`.

    `root` (`runtime.checkpointRoot`), when the operator gave one, decides alone: `<root>/<job>`.
    `uid` names the FineTuneJob among those ever called `job`: `<root>/<job>/<uid>`.
    """
    inner = f"{job}/{uid}" if uid else job
    if root is not None:
        location = root
        directory = f"{root.rstrip('/')}/{job}"
    elif location is None:
        return CheckpointPlace(local=work_checkpoints / inner)
    else:
        directory = _job_directory(location.rstrip("/"), job=job, own_job=own_job)
    if uid:
        directory = f"{directory}/{uid}"
    if directory.startswith("s3://"):
        return CheckpointPlace(local=work_checkpoints / inner, remote=directory)
    return CheckpointPlace(local=_filesystem_path(directory, location=location, pvc_mount_root=pvc_mount_root))


MODEL_FILE = "MODEL.json"
"""Beside a job's `step-<N>` directories: the repo and commit its checkpoints were trained from.
On a filesystem written in place; under `s3://` written locally, put beside the `step-<N>` prefixes
and fetched back with the checkpoints (`training.remote`)."""


@dataclass(frozen=True)
class CheckpointModel:
    """Which model a job's checkpoints continue: read back by a job that starts from them."""

    repo: str
    revision_sha: str | None

    def write(self, job_dir: Path) -> Path:
        """`<job_dir>/MODEL.json`, through a hidden name; its path (an object store's copy is `S3Mirror.put_beside`)."""
        job_dir.mkdir(parents=True, exist_ok=True)
        staging = job_dir / f".{MODEL_FILE}.partial"
        staging.write_text(json.dumps({"repo": self.repo, "revisionSha": self.revision_sha}), encoding="utf-8")
        return staging.replace(job_dir / MODEL_FILE)

    @classmethod
    def read(cls, job_dir: Path) -> CheckpointModel | None:
        try:
            raw = json.loads((job_dir / MODEL_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        repo, sha = raw.get("repo"), raw.get("revisionSha")
        return cls(repo=repo, revision_sha=sha if isinstance(sha, str) else None) if isinstance(repo, str) else None


def sole_uid(job_dir: Path) -> str | None:
    """The one uid directory under a job's directory on a filesystem (None: none, several, or the old flat layout).

    Lets a hand-written `fromCheckpoint: <job>` (a local run, which knows no uids) find the only
    FineTuneJob that ever wrote under that name; with several the reference must name the uid.
    """
    if not job_dir.is_dir() or any(child.name.startswith("step-") for child in job_dir.iterdir()):
        return None
    uids = [child.name for child in job_dir.iterdir() if child.is_dir() and not child.name.startswith(".")]
    return uids[0] if len(uids) == 1 else None


def _job_directory(location: str, *, job: str, own_job: str) -> str:
    parent, _, last = location.rpartition("/")
    if last == own_job and parent:
        return location if job == own_job else f"{parent}/{job}"
    return f"{location}/{job}"


def _filesystem_path(directory: str, *, location: str, pvc_mount_root: str) -> Path:
    if directory.startswith("pvc://"):
        claim, _, inside = directory.removeprefix("pvc://").partition("/")
        if not claim or ".." in PurePosixPath(inside).parts:
            raise InvalidInput(
                f"The checkpoint location {location!r} is not a claim and a path inside it.",
                reason="InvalidCheckpointUri",
                field="checkpoint.uri",
                hint="Write it as pvc://<claim>/<path>, with no '..' in the path.",
            )
        return Path(pvc_mount_root) / claim / inside
    if directory.startswith("file://"):
        return Path(directory.removeprefix("file://"))
    if "://" in directory:
        raise InvalidInput(
            f"The checkpoint location {location!r} has a scheme the trainer cannot write.",
            reason="InvalidCheckpointUri",
            field="checkpoint.uri",
            hint="Use a path, pvc://<claim>/<path> or s3://<bucket>/<prefix>.",
        )
    return Path(directory)
