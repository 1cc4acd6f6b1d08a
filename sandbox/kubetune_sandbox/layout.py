"""Where the sandbox keeps what a cluster keeps on nodes and volumes: one directory tree.

```
<root>/volumes/pvc/<claim>/           a PersistentVolumeClaim (ReadWriteMany: every pod shares it)
<root>/volumes/pvc/<cache claim>/hf   -> hf_home/hub, so pods read the caller's Hugging Face cache
<root>/pods/<namespace>/<pod>/        one pod: its volumes, termination log, container log
```
The paths are pure; `prepare` is the one method that touches the disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HF_LINK = "hf"
"""The cache claim's entry for the pods' /cache/hf: the trainer's `runtime.cacheDir`, a hub cache
(`models--<org>--<name>/...`, what `snapshot_download(cache_dir=...)` reads)."""
HUB = "hub"
"""Where an HF_HOME keeps its hub cache."""


@dataclass(frozen=True)
class SandboxLayout:
    root: Path
    hf_home: Path | None = None
    """The caller's HF_HOME, whose hub cache pods read as theirs (a hub cache itself, with no `hub`
    inside, is taken as it is)."""
    cache_claim: str | None = None
    """The claim the operator mounts at /cache (settings.cache_claim)."""

    def volume(self, claim: str) -> Path:
        """The host directory of a PersistentVolumeClaim."""
        return self.root / "volumes" / "pvc" / claim

    def pod_dir(self, namespace: str, name: str) -> Path:
        return self.root / "pods" / namespace / name

    def prepare(self) -> None:
        """Create the tree, and link the cache claim's `hf` to hf_home's hub cache.

        A link from an earlier run to another cache is replaced; a real directory there is kept.
        """
        (self.root / "pods").mkdir(parents=True, exist_ok=True)
        (self.root / "volumes" / "pvc").mkdir(parents=True, exist_ok=True)
        if self.cache_claim is None or self.hf_home is None:
            return
        hub = self.hf_home.resolve() / HUB
        target = hub if hub.is_dir() else self.hf_home.resolve()
        link = self.volume(self.cache_claim) / HF_LINK
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() and link.readlink() != target:
            link.unlink()
        if not link.exists() and not link.is_symlink():
            link.symlink_to(target, target_is_directory=True)
