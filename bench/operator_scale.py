"""Operator scale benchmark against the in-memory API emulator (a script, not a test).

    .venv/bin/python bench/operator_scale.py [--sequential 200] [--burst 1000] [--idle-seconds 60]
    .venv/bin/python bench/operator_scale.py --against 985cf53 --rounds 2 [same options]

With `--against REF` the operator at git REF (checked out into a temporary worktree, with its own
CRDs and template catalog) and this tree's are measured one after the other, the order swapped
every round (REF first in odd rounds), so a load that rises or falls meets both sides alike; each
round prints both figures and the after/before ratios. Both sides run this script, so both meet
the same emulator and the same harness: only the operator differs (`--operator-tree` is how the
script measures REF's). Not at the same time: one side's burst would land on the other's
sequential jobs.

The emulator (sandbox/kubetune_sandbox/emulator.py) runs in this process; the operator runs as its own
process (`python -m kubetune_operator`), so its RSS and CPU time are its own. Measured:
- apply-to-Job latency over N sequential jobs: from the FineTuneJob's POST to the operator's POST
  of its trainer batch Job, both timestamped inside the emulator (preflight off, so the first Job
  is the GPU Job);
- a burst of M jobs posted at once: time until every one has its Job and a status phase;
- operator RSS (VmRSS) idle, and with every job above idle;
- the operator process's CPU time (user + system, /proc/PID/stat) per job, over the sequential
  jobs and over the burst: the operator's own work, apart from the emulator's (which validates
  each write against the CRD schema in Python, in this process, on the same cores);
- mutating API calls of one full lifecycle (create to Succeeded, the test playing the Job
  controller, the kubelet and the trainer), split into status patches, children and Events,
  with kopf's own writes counted apart; then writes per idle job per minute.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import kmock

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import CATALOG_DIR, CRD_DIR, load_yaml  # noqa: E402
from tests.operator.cluster_actors import Actors, trainer_succeeded  # noqa: E402

from kubetune_sandbox.emulator import ApiEmulator  # noqa: E402
from kubetune_trainer.contract import Stage  # noqa: E402

NAMESPACE = "bench"
FTJ = kmock.resource("kubetune.dev/v1alpha1/finetunejobs")
JOBS = kmock.resource("batch/v1/jobs")
OPERATOR_AGENT = "kubetune-operator/"
KOPF_AGENT = "kopf/"


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "model": "meta-llama/Llama-3.2-1B-Instruct",
            "trainingFile": "pvc://datasets/chat/train.jsonl",
            "checkpoint": {"uri": f"pvc://checkpoints/{name}"},
        },
    }


class Clock:
    """Times of FineTuneJob POSTs and of the operator's batch Job POSTs, taken inside the emulator."""

    def __init__(self) -> None:
        self.applied: dict[str, float] = {}
        self.job_created: dict[str, float] = {}

    def __call__(self, request: kmock.Request) -> None:
        if request.method.value != "POST" or not isinstance(request.data, dict):
            return
        name = request.data.get("metadata", {}).get("name", "")
        if request.resource == FTJ:
            self.applied[name] = time.perf_counter()
        elif request.resource == JOBS and request.headers.get("User-Agent", "").startswith(OPERATOR_AGENT):
            self.job_created.setdefault(name.removesuffix("-a1"), time.perf_counter())


def writes(cluster: ApiEmulator, agent: str) -> int:
    return len(cluster.writes(user_agent=agent))


async def post_job(cluster: ApiEmulator, name: str) -> None:
    async with cluster.post(
        f"/apis/kubetune.dev/v1alpha1/namespaces/{NAMESPACE}/finetunejobs", json=manifest(name)
    ) as made:
        assert made.status < 400, await made.text()


async def wait_until(check: Any, *, timeout: float, what: str, every: float = 0.01) -> None:
    deadline = time.perf_counter() + timeout
    while not check():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout}s")
        await asyncio.sleep(every)


def with_status(cluster: ApiEmulator) -> set[str]:
    return {
        body["metadata"]["name"]
        for body in cluster.live_objects(FTJ, NAMESPACE)
        if (body.get("status") or {}).get("phase")
    }


async def lifecycle(cluster: ApiEmulator, actors: Actors) -> dict[str, int]:
    """One job from create to Succeeded; the operator's writes by kind, and kopf's."""
    before = {agent: writes(cluster, agent) for agent in (OPERATOR_AGENT, KOPF_AGENT)}
    start = len(list(cluster))
    await post_job(cluster, "life")
    await wait_until(lambda: cluster.live(JOBS, NAMESPACE, "life-a1"), timeout=30, what="the lifecycle job's Job")
    (pod,) = await actors.start_pods("life-a1")
    await actors.run(pod)
    await wait_until(
        lambda: (cluster.live(FTJ, NAMESPACE, "life") or {}).get("status", {}).get("phase") == "Running",
        timeout=30,
        what="Running",
    )
    done: list[Stage] = []
    for stage in Stage:
        await actors.report("life", stage, done=list(done))
        done.append(stage)
        await asyncio.sleep(0.3)
    await actors.terminate(pod, exit_code=0, message=trainer_succeeded())
    await actors.job_condition("life-a1", "Complete")
    await wait_until(
        lambda: (cluster.live(FTJ, NAMESPACE, "life") or {}).get("status", {}).get("phase") == "Succeeded",
        timeout=30,
        what="Succeeded",
    )
    await asyncio.sleep(1.0)
    ours = [
        r
        for r in list(cluster)[start:]
        if r.headers.get("User-Agent", "").startswith(OPERATOR_AGENT)
        and r.method.value in {"POST", "PATCH", "PUT", "DELETE"}
    ]
    return {
        "total": writes(cluster, OPERATOR_AGENT) - before[OPERATOR_AGENT],
        "status_patches": sum(1 for r in ours if r.method.value == "PATCH" and r.url.path.endswith("/status")),
        "children": sum(1 for r in ours if r.method.value in {"POST", "DELETE"} and not r.url.path.endswith("/events")),
        "events": sum(1 for r in ours if r.url.path.endswith("/events")),
        "kopf": writes(cluster, KOPF_AGENT) - before[KOPF_AGENT],
    }


async def install(cluster: ApiEmulator, tree: Path) -> None:
    """`tree`'s CRDs and template catalog, as the Helm chart installs them."""
    cluster.resources.load_bundled()
    for path in sorted((tree / CRD_DIR.relative_to(REPO)).glob("*.yaml")):
        cluster.register_crd(load_yaml(path))
    for path in sorted((tree / CATALOG_DIR.relative_to(REPO)).glob("*.yaml")):
        async with cluster.post("/apis/kubetune.dev/v1alpha1/basemodeltemplates", json=load_yaml(path)) as made:
            assert made.status < 400


def start_operator(tree: Path, server: kmock.Server) -> tuple[subprocess.Popen[bytes], str]:
    """`tree`'s operator, cluster-wide, in a process of its own; its log's path."""
    env = {
        **os.environ,
        "KUBETUNE_PREFLIGHT": "false",
        "PYTHONPATH": str(tree / "operator") + os.pathsep + str(tree / "trainer_image"),
    }
    log = tempfile.NamedTemporaryFile("w+", prefix="operator-", suffix=".log", delete=False)  # noqa: SIM115
    url = str(server.url).rstrip("/")
    command = [sys.executable, "-m", "kubetune_operator", "--server", url, "--metrics-port", "0"]
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT), log.name


async def run(args: argparse.Namespace) -> dict[str, Any]:
    clock = Clock()
    tree = args.operator_tree.resolve()
    async with ApiEmulator(keep_versions=1) as cluster, kmock.Server(cluster) as server:
        await install(cluster, tree)
        cluster.after_write.append(clock)
        actors = Actors(cluster, namespace=NAMESPACE)
        # The emulator shares this process with its setup (kmock, jsonschema, the CRDs): a full collection
        # walking those objects stalled it for about 30 ms, a delay that showed in one job's apply-to-Job.
        gc.collect()
        gc.freeze()
        operator, log_path = start_operator(tree, server)
        try:
            started = time.perf_counter()
            watched = {FTJ, JOBS, kmock.resource("v1/pods"), kmock.resource("kubetune.dev/v1alpha1/basemodeltemplates")}
            await wait_until(
                lambda: all(
                    any(r.action == kmock.action.WATCH and r.resource == w for r in list(cluster)) for w in watched
                ),
                timeout=60,
                what="the operator's watches",
            )
            startup = time.perf_counter() - started
            await asyncio.sleep(2.0)
            idle_rss = rss_kib(operator.pid)
            cpu_start = cpu_seconds(operator.pid)

            for i in range(args.sequential):
                name = f"seq-{i}"
                await post_job(cluster, name)
                await wait_until(lambda n=name: n in clock.job_created, timeout=30, what=f"{name}'s Job")
            cpu_sequential = cpu_seconds(operator.pid) - cpu_start
            latencies = [
                1000 * (clock.job_created[f"seq-{i}"] - clock.applied[f"seq-{i}"]) for i in range(args.sequential)
            ]

            names = [f"burst-{i}" for i in range(args.burst)]
            burst_start = time.perf_counter()
            await asyncio.gather(*(post_job(cluster, name) for name in names))
            posted = time.perf_counter() - burst_start
            pending = set(names)

            def burst_done() -> bool:
                pending.difference_update(n for n in list(pending) if n in clock.job_created)
                return not pending and with_status(cluster) >= set(names)

            await wait_until(burst_done, timeout=600, what="the burst", every=0.25)
            burst_total = time.perf_counter() - burst_start
            burst_each = [clock.job_created[n] - clock.applied[n] for n in names]
            cpu_burst = cpu_seconds(operator.pid) - cpu_start - cpu_sequential

            await asyncio.sleep(3.0)
            jobs = args.sequential + args.burst
            loaded_rss = rss_kib(operator.pid)
            life = await lifecycle(cluster, actors)

            idle_before = writes(cluster, OPERATOR_AGENT) + writes(cluster, KOPF_AGENT)
            await asyncio.sleep(args.idle_seconds)
            idle_writes = writes(cluster, OPERATOR_AGENT) + writes(cluster, KOPF_AGENT) - idle_before
        finally:
            operator.terminate()
            operator.wait(timeout=30)
            await actors.aclose()
        return {
            "operator_startup_seconds": round(startup, 2),
            "sequential_jobs": args.sequential,
            "apply_to_job_ms_p50": round(statistics.median(latencies), 1),
            "apply_to_job_ms_p99": round(percentile(latencies, 0.99), 1),
            "apply_to_job_ms_max": round(max(latencies), 1),
            "burst_jobs": args.burst,
            "burst_posted_seconds": round(posted, 2),
            "burst_all_reconciled_seconds": round(burst_total, 2),
            "burst_per_job_seconds_p50": round(statistics.median(burst_each), 2),
            "burst_per_job_seconds_p99": round(percentile(burst_each, 0.99), 2),
            "operator_cpu_ms_per_sequential_job": round(1000 * cpu_sequential / max(args.sequential, 1), 2),
            "operator_cpu_ms_per_burst_job": round(1000 * cpu_burst / max(args.burst, 1), 2),
            "rss_idle_mib": round(idle_rss / 1024, 1),
            "rss_loaded_mib": round(loaded_rss / 1024, 1),
            "rss_per_job_kib": round((loaded_rss - idle_rss) / jobs, 1),
            "lifecycle_writes": life,
            "idle_seconds": args.idle_seconds,
            "idle_jobs": jobs + 1,
            "idle_writes_per_job_per_minute": round(idle_writes / (jobs + 1) / (args.idle_seconds / 60), 4),
            "operator_log": log_path,
        }


COMPARED = (
    "apply_to_job_ms_p50",
    "apply_to_job_ms_p99",
    "burst_all_reconciled_seconds",
    "burst_per_job_seconds_p99",
    "operator_cpu_ms_per_sequential_job",
    "operator_cpu_ms_per_burst_job",
    "rss_idle_mib",
    "rss_per_job_kib",
)


def measure_tree(tree: Path, options: list[str]) -> subprocess.Popen[str]:
    """This script, in a process of its own, measuring the operator of `tree`; its figures come on stdout."""
    paths = [REPO / "operator", REPO / "trainer_image", REPO / "sandbox", REPO]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in paths)}
    command = [sys.executable, str(Path(__file__).resolve()), *options, f"--operator-tree={tree}"]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)


def compare(ref: str, *, rounds: int, options: list[str]) -> list[dict[str, Any]]:
    """Each round: the code at `ref` and this tree, one after the other; their figures and ratios."""
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="operator-scale-") as scratch:
        before_tree = Path(scratch) / "before"
        add = ["git", "-C", str(REPO), "worktree", "add", "--detach", str(before_tree), ref]
        subprocess.run(add, check=True, stdout=sys.stderr)
        try:
            for _ in range(rounds):
                load = os.getloadavg()
                sides = [("before", before_tree), ("after", REPO)]
                figures = {}
                for side, tree in sides if len(results) % 2 == 0 else reversed(sides):
                    process = measure_tree(tree, options)
                    out, _ = process.communicate()
                    if process.returncode != 0:
                        raise RuntimeError(f"the {side} measurement failed ({process.returncode})")
                    figures[side] = json.loads(out)
                ratios = {k: round(figures["after"][k] / figures["before"][k], 2) for k in COMPARED}
                results.append({"load_average_at_start": load, **figures, "after_over_before": ratios})
        finally:
            remove = ["git", "-C", str(REPO), "worktree", "remove", "--force", str(before_tree)]
            subprocess.run(remove, check=False, stdout=sys.stderr)
    return results


def ratio_table(ref: str, results: list[dict[str, Any]]) -> str:
    lines = [f"| measure | round | {ref} | this tree | after / before |", "| --- | --- | --- | --- | --- |"]
    for key in COMPARED:
        for number, result in enumerate(results, start=1):
            before, after = result["before"][key], result["after"][key]
            lines.append(f"| {key} | {number} | {before} | {after} | {result['after_over_before'][key]} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequential", type=int, default=200)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument(
        "--operator-tree",
        type=Path,
        default=REPO,
        help="the source tree whose operator, CRDs and template catalog are measured (default: this one)",
    )
    parser.add_argument("--against", metavar="REF", help="also measure git REF, alternating; print ratios")
    parser.add_argument("--rounds", type=int, default=1, help="with --against: how many pairs to measure")
    args = parser.parse_args()
    if args.against is None:
        figures = asyncio.run(run(args))
        print(json.dumps(figures, indent=2))
        return 0
    options = [f"--sequential={args.sequential}", f"--burst={args.burst}", f"--idle-seconds={args.idle_seconds}"]
    results = compare(args.against, rounds=args.rounds, options=options)
    print(json.dumps(results, indent=2))
    print(ratio_table(args.against, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
