"""Slurm job arrays that never lose a job: a replacement for the Slurm plugin's `run_jobs`.

snakemake-executor-plugin-slurm 2.8.0 holds back the ready jobs of an arrayed rule when fewer
arrive than the DAG has ready (a `jobs` limit or a resource such as `cdse_connections` lets
only some through): its `run_jobs` returns without submitting them, and Snakemake, which hands
each job over once, then waits for them forever (upstream issue #473, open;
docs/slurm-plugin-issue-473.md). Its arrays also take every task's resources from the first
task, although a retry asks for more. The replacement submits every job it is given: one array
per rule and resource set, and singly a lone job, a group job or a job of a rule that is not
arrayed. The workflow installs it on the plugin's `Executor` class only in runs whose executor
is `slurm` (workflow/rules/common.smk, onstart) and only on the plugin version it was written
for. The plugin is imported inside functions only: the steps run in images without Snakemake.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterable
from importlib import metadata
from typing import Any, Protocol

PLUGIN = "snakemake-executor-plugin-slurm"
FIXED_FOR = "2.8.0"


class Job(Protocol):
    """What the replacement reads of a Snakemake job (or group job)."""

    name: str
    resources: Any  # Snakemake's ResourceList: items() gives (name, value)

    def is_group(self) -> bool: ...


def is_arrayed(job: Job, array_jobs: Collection[str]) -> bool:
    """Whether `slurm-array-jobs` selects the job's rule; a group job never goes in an array."""
    return not job.is_group() and ("all" in array_jobs or job.name in array_jobs)


def resource_key(job: Job) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The rule and resources of a job: one sbatch call gives all tasks of an array the same."""
    return job.name, tuple(sorted((name, str(value)) for name, value in job.resources.items()))


def plan(jobs: Iterable[Job], array_jobs: Collection[str]) -> tuple[list[Job], list[list[Job]]]:
    """Split jobs into those submitted singly and arrays of two or more alike jobs."""
    singles: list[Job] = []
    alike: dict[tuple, list[Job]] = {}
    for job in jobs:
        if is_arrayed(job, array_jobs):
            alike.setdefault(resource_key(job), []).append(job)
        else:
            singles.append(job)
    singles += [batch[0] for batch in alike.values() if len(batch) == 1]
    return singles, [batch for batch in alike.values() if len(batch) > 1]


def _running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop Snakemake schedules from, where the plugin reports submissions to."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def run_jobs(self: Any, jobs: list[Job]) -> None:
    """Submit every job given (the plugin's own run_jobs may keep some back forever)."""
    if self._main_event_loop is None:
        self._main_event_loop = _running_loop()
    singles, arrays = plan(jobs, self.array_jobs)
    for job in singles:
        self._submit_job(job)
    for batch in arrays:
        self._submit_array_jobs(batch)


def plugin_version() -> str | None:
    """The installed Slurm plugin's version (None when it is not installed)."""
    try:
        return metadata.version(PLUGIN)
    except metadata.PackageNotFoundError:
        return None


def install(executor: str, logger: logging.Logger, version: str | None = None) -> bool:
    """Replace the plugin's run_jobs for a Slurm run on 2.8.0; whether the fix is active."""
    if executor != "slurm":
        return False
    version = version or plugin_version()
    if version != FIXED_FOR:
        logger.warning(
            f"tilepipe: the Slurm job-array fix was written for {PLUGIN} {FIXED_FOR}, this is "
            f"{version}: not applied; re-check upstream issue #473 before using slurm-array-jobs"
        )
        return False
    from snakemake_executor_plugin_slurm import Executor

    if Executor.run_jobs is not run_jobs:
        Executor.run_jobs = run_jobs
        logger.info(
            f"tilepipe: {PLUGIN} {version}: job arrays per rule and resource set, no job held "
            "back (tilepipe.campaign.slurm_arrays, upstream issue #473)"
        )
    return True
