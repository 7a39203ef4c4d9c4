# Job arrays for the per-scene steps (profiles: `slurm-array-jobs`), made safe.
#
# snakemake-executor-plugin-slurm ≤ 2.8.0 drops a rule's ready jobs without submitting them
# when fewer arrive than the DAG has ready (throttled by `jobs` or a resource such as the
# download slots): Snakemake then waits for them forever (upstream issue #473, open). Its
# arrays also take every task's runtime and memory from the first task, although a retry asks
# for more. Until the plugin fixes both, this replaces its `run_jobs` with one that submits
# what it is given: one array per rule and resource set (a single job alone). The check below
# finds the faulty code by its log message, so a fixed plugin is left alone.
import asyncio
import inspect


def _slurm_run_jobs(self, jobs):
    """Submit every job given: arrays per (rule, resources), lone jobs and groups singly."""
    if self._main_event_loop is None:
        try:
            self._main_event_loop = asyncio.get_running_loop()
        except RuntimeError:
            self._main_event_loop = None
    batches = {}
    for job in jobs:
        arrayed = "all" in self.array_jobs or job.name in self.array_jobs
        if job.is_group() or not arrayed:
            self._submit_job(job)
            continue
        key = (job.name, tuple(sorted((k, str(v)) for k, v in job.resources.items())))
        batches.setdefault(key, []).append(job)
    for batch in batches.values():
        if len(batch) == 1:
            self._submit_job(batch[0])
        else:
            self._submit_array_jobs(batch)


def _fix_slurm_arrays():
    """Patch the Slurm plugin's array submission where it has the faults described above."""
    try:
        from snakemake_executor_plugin_slurm import Executor
    except ImportError:  # the plugin is not installed: nothing runs on Slurm
        return False
    if not all(hasattr(Executor, n) for n in ("_submit_job", "_submit_array_jobs")):
        return False
    if "Array job collection incomplete" not in inspect.getsource(Executor.run_jobs):
        return False
    Executor.run_jobs = _slurm_run_jobs
    return True


SLURM_ARRAYS_FIXED = _fix_slurm_arrays()
