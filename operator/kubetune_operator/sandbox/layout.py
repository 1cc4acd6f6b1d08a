"""Where the sandbox keeps what a cluster keeps on nodes and volumes: one directory tree.

```
<root>/volumes/pvc/<claim>/           a PersistentVolumeClaim (ReadWriteMany: every pod shares it)
<root>/volumes/pvc/<cache claim>/hf   -> hf_home, so pods read the caller's Hugging Face cache
<root>/pods/<namespace>/<pod>/        one pod: its volumes, termination log, container log
```
The paths are pure; `prepare` is the one method that touches the disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HF_LINK = "hf"
"""The cache claim's entry for the Hugging Face cache: the pods' HF_HOME, /cache/hf, lands here."""


@dataclass(frozen=True)
class SandboxLayout:
    root: Path
    hf_home: Path | None = None
    """A Hugging Face cache (HF_HOME layout) that pods see under the cache claim."""
    cache_claim: str | None = None
    """The claim the operator mounts at /cache (settings.cache_claim)."""

    def volume(self, claim: str) -> Path:
        """The host directory of a PersistentVolumeClaim."""
        return self.root / "volumes" / "pvc" / claim

    def pod_dir(self, namespace: str, name: str) -> Path:
        return self.root / "pods" / namespace / name

    def prepare(self) -> None:
        """Create the tree, and link the cache claim's `hf` to hf_home (once; an existing entry is kept)."""
        (self.root / "pods").mkdir(parents=True, exist_ok=True)
        (self.root / "volumes" / "pvc").mkdir(parents=True, exist_ok=True)
        if self.cache_claim is None or self.hf_home is None:
            return
        link = self.volume(self.cache_claim) / HF_LINK
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists() and not link.is_symlink():
            link.symlink_to(self.hf_home.resolve(), target_is_directory=True)
