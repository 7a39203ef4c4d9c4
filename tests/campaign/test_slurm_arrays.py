"""The Slurm plugin's Executor, with tilepipe's run_jobs installed, submits every job it is given.

No Slurm: an Executor made without its __init__ (which would start threads and query the
cluster) whose `_submit_job` and `_submit_array_jobs` only record what they are handed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from tilepipe.campaign import slurm_arrays

plugin = pytest.importorskip("snakemake_executor_plugin_slurm")
Executor = plugin.Executor


class FakeJob:
    """A Snakemake job as run_jobs sees it: a rule name, resources, group or not."""

    def __init__(self, name: str, group: bool = False, **resources) -> None:
        self.name = name
        self.resources = {"runtime": 30, "mem_mb": 4000, **resources}
        self.rule = SimpleNamespace(name=name)
        self.group = group

    def is_group(self) -> bool:
        return self.group

    def __repr__(self) -> str:
        return f"FakeJob({self.name}, {self.resources})"


def executor(array_jobs: set[str], ready: list[FakeJob] = ()) -> Executor:
    """A plugin Executor that records submissions instead of calling sbatch."""
    ex = Executor.__new__(Executor)
    ex.array_jobs = array_jobs
    ex.max_array_size = 1000
    ex._main_event_loop = None
    ex.logger = logging.getLogger("test_slurm_arrays")
    ex.workflow = SimpleNamespace(dag=SimpleNamespace(ready_jobs=lambda: list(ready)))
    ex.singles, ex.arrays = [], []
    ex._submit_job = ex.singles.append
    ex._submit_array_jobs = lambda jobs: ex.arrays.append(list(jobs))
    return ex


def submitted(ex: Executor) -> list[FakeJob]:
    return ex.singles + [job for batch in ex.arrays for job in batch]


@pytest.fixture
def installed(monkeypatch) -> None:
    """tilepipe's run_jobs on the plugin's Executor for one test, the plugin's own after it."""
    monkeypatch.setattr(Executor, "run_jobs", Executor.run_jobs)
    monkeypatch.setattr(slurm_arrays, "plugin_version", lambda: slurm_arrays.FIXED_FOR)
    assert slurm_arrays.install("slurm", logging.getLogger("test_slurm_arrays"))


@pytest.mark.parametrize(("ready", "selected"), [(10, 3), (5, 2), (3, 1)])
def test_the_plugins_own_run_jobs_keeps_back_jobs_when_fewer_arrive_than_stay_ready(
    ready, selected
):
    """Why the fix exists: Snakemake takes the selected jobs out of the DAG's ready jobs, then
    hands them over once; plugin 2.8.0 submits none of them while more stay ready."""
    jobs = [FakeJob("download") for _ in range(ready)]
    ex = executor({"download"}, jobs[selected:])
    Executor.run_jobs(ex, jobs[:selected])
    assert submitted(ex) == []


def test_every_job_given_is_submitted_exactly_once(installed):
    ready = [FakeJob("download") for _ in range(10)]
    given = [*ready[:3], FakeJob("superres", gpu=1), FakeJob("qc"), FakeJob("train", group=True)]
    ex = executor({"download", "superres", "qc"}, ready[3:])
    ex.run_jobs(given)
    assert sorted(map(id, submitted(ex))) == sorted(map(id, given))


def test_one_array_per_rule_and_resource_set(installed):
    downloads = [FakeJob("download") for _ in range(3)]
    qcs = [FakeJob("qc") for _ in range(2)]
    ex = executor({"all"})
    ex.run_jobs([downloads[0], qcs[0], downloads[1], qcs[1], downloads[2]])
    assert ex.singles == []
    assert sorted(ex.arrays, key=len) == [qcs, downloads]


def test_a_lone_job_of_an_arrayed_rule_goes_alone(installed):
    job = FakeJob("download")
    ex = executor({"download"}, [job, FakeJob("download")])
    ex.run_jobs([job])
    assert ex.singles == [job] and ex.arrays == []


def test_group_jobs_and_rules_not_arrayed_go_singly(installed):
    groups = [FakeJob("scene", group=True) for _ in range(2)]
    plain = [FakeJob("train_classifier") for _ in range(2)]
    ex = executor({"download", "scene"})
    ex.run_jobs([*groups, *plain])
    assert ex.singles == [*groups, *plain] and ex.arrays == []


def test_all_arrays_every_rule_but_not_groups(installed):
    groups = [FakeJob("scene", group=True) for _ in range(2)]
    plain = [FakeJob("train_classifier") for _ in range(2)]
    ex = executor({"all"})
    ex.run_jobs([*groups, *plain])
    assert ex.singles == groups and ex.arrays == [plain]


def test_a_retry_asking_for_more_goes_in_another_array(installed):
    first = [FakeJob("superres", runtime=120) for _ in range(2)]
    retried = [FakeJob("superres", runtime=240, mem_mb=64000) for _ in range(2)]
    ex = executor({"superres"})
    ex.run_jobs([first[0], retried[0], first[1], retried[1]])
    assert ex.singles == []
    assert ex.arrays == [first, retried]


def test_the_event_loop_is_taken_as_the_plugin_does(installed):
    ex = executor({"qc"})
    ex.run_jobs([FakeJob("qc")])
    assert ex._main_event_loop is None  # called outside a loop: reports go straight through


def test_another_plugin_version_is_refused_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(Executor, "run_jobs", Executor.run_jobs)
    own = Executor.run_jobs
    with caplog.at_level(logging.INFO):
        assert not slurm_arrays.install("slurm", logging.getLogger("t"), version="2.9.0")
    assert Executor.run_jobs is own
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "written for snakemake-executor-plugin-slurm 2.8.0" in record.message
    assert "2.9.0" in record.message and "re-check" in record.message


def test_the_version_is_read_from_the_installed_distribution(monkeypatch):
    monkeypatch.setattr(slurm_arrays.metadata, "version", lambda name: f"{name} 9.9")
    assert slurm_arrays.plugin_version() == "snakemake-executor-plugin-slurm 9.9"


def test_installing_twice_is_harmless_and_logs_one_line(monkeypatch, caplog):
    monkeypatch.setattr(Executor, "run_jobs", Executor.run_jobs)
    log = logging.getLogger("t")
    with caplog.at_level(logging.INFO):
        assert slurm_arrays.install("slurm", log, version="2.8.0")
        assert slurm_arrays.install("slurm", log, version="2.8.0")
    assert Executor.run_jobs is slurm_arrays.run_jobs
    assert len(caplog.records) == 1 and caplog.records[0].levelno == logging.INFO


@pytest.mark.parametrize("name", ["local", "dryrun", "touch", "slurm-jobstep", ""])
def test_not_installed_unless_the_executor_is_slurm(monkeypatch, caplog, name):
    monkeypatch.setattr(Executor, "run_jobs", Executor.run_jobs)
    own = Executor.run_jobs
    with caplog.at_level(logging.INFO):
        assert not slurm_arrays.install(name, logging.getLogger("t"), version="2.8.0")
    assert Executor.run_jobs is own and caplog.records == []


def test_the_fix_is_gated_on_the_version_the_workflow_extra_pins():
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert f'"{slurm_arrays.PLUGIN}=={slurm_arrays.FIXED_FOR}"' in pyproject
