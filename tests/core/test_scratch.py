"""Owner-named temporaries and the writer lock: leftovers of killed processes go, live ones stay.

Every owner here is a real process: a child that has exited stands for a killed step (its PID
and start time name no running process any more), a child stopped or sleeping for a live one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from tilepipe.core.errors import InputError
from tilepipe.core.raster import atomic_output, gtiff_profile
from tilepipe.core.scratch import (
    Owner,
    WriterLock,
    host_hash,
    is_leftover,
    leftovers,
    lock_path,
    owner_of,
    remove_leftovers,
    temp_beside,
    this_process,
)

_SELF = "from tilepipe.core.scratch import this_process; import json; o = this_process(); "


def dead_owner() -> Owner:
    """The owner record of a process that has exited since (a killed step, for the tests)."""
    code = _SELF + "print(json.dumps([o.pid, o.start, o.host]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return Owner(*json.loads(out.stdout))


def killed_writer_leaves(dest: Path, kind: str, size: int) -> Path:
    """Let a real process create a temporary of ``dest`` and SIGKILL itself; return the file."""
    code = (
        "import os, signal, sys; from tilepipe.core.scratch import temp_beside; "
        f"p = temp_beside(sys.argv[1], {kind!r}, '.tif'); p.write_bytes(b'x' * {size}); "
        "print(p, flush=True); os.kill(os.getpid(), signal.SIGKILL)"
    )
    run = subprocess.run([sys.executable, "-c", code, str(dest)], capture_output=True, text=True)
    assert run.returncode == -signal.SIGKILL, run.stderr
    return Path(run.stdout.strip())


def test_a_temporary_names_the_process_that_writes_it(tmp_path):
    tmp = temp_beside(tmp_path / "dr.tif", "tmp", ".tif")
    assert tmp.name.startswith(".dr.tif.tmp-") and tmp.suffix == ".tif"
    assert owner_of(tmp) == this_process() and not is_leftover(tmp)


def test_a_killed_writers_temporary_is_removed_when_the_output_is_written_again(tmp_path):
    """The example: a ``kill -9`` during the final rename leaves ``.dr.tif.tmp-*`` behind."""
    dest = tmp_path / "dr.tif"
    left = killed_writer_leaves(dest, "tmp", 11_000)
    assert left.is_file() and is_leftover(left)
    grid = Affine(10.0, 0.0, 6e5, 0.0, -10.0, 5.3e6)
    profile = gtiff_profile(
        width=16, height=16, count=1, dtype="uint8", crs="EPSG:32633", transform=grid
    )
    with atomic_output(dest) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        assert not left.exists()  # gone before the new temporary is written
        dst.write(np.ones((1, 16, 16), dtype="uint8"))
    assert dest.is_file() and list(tmp_path.iterdir()) == [dest]


def test_a_killed_fields_probabilities_go_with_their_nested_temporaries(tmp_path):
    dest = tmp_path / "fields.gpkg"
    prob = killed_writer_leaves(dest, "prob", 100)
    seeds = prob.with_name(f".{prob.name}.seeds-{owner_of(prob).tag}-zz.tif")
    seeds.write_bytes(b"s")
    assert sorted(remove_leftovers(dest)) == sorted([prob, seeds])


def test_a_live_processs_temporary_is_kept(tmp_path):
    dest = tmp_path / "dr.tif"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = Path(f"/proc/{live.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        tmp = tmp_path / f".dr.tif.tmp-{Owner(live.pid, int(start), host_hash()).tag}-x.tif"
        tmp.write_bytes(b"x")
        assert remove_leftovers(dest) == [] and tmp.exists()
    finally:
        live.kill()
        live.wait()
    assert remove_leftovers(dest) == [tmp]


def test_a_temporary_from_another_host_is_kept(tmp_path):
    owner = Owner(dead_owner().pid, 1, host_hash("another-node"))
    tmp = tmp_path / f".dr.tif.tmp-{owner.tag}-x.tif"
    tmp.write_bytes(b"x")
    assert remove_leftovers(tmp_path / "dr.tif") == [] and tmp.exists()


def test_a_reused_pid_does_not_make_a_temporary_live(tmp_path):
    me = this_process()
    tmp = tmp_path / f".dr.tif.tmp-{Owner(me.pid, me.start + 1, me.host).tag}-x.tif"
    tmp.write_bytes(b"x")
    assert is_leftover(tmp)


def test_other_outputs_and_plain_files_are_never_leftovers_of_an_output(tmp_path):
    dead = dead_owner().tag
    other = tmp_path / f".s2.tif.tmp-{dead}-x.tif"
    plain = tmp_path / "dr.tif.parts"
    for path in (other, plain, tmp_path / ".dr.tif.tmp-legacy1.tif"):
        path.write_bytes(b"x")
    assert remove_leftovers(tmp_path / "dr.tif") == []
    assert leftovers(tmp_path) == {other: 1}


def _holder(dest: Path) -> subprocess.Popen:
    """A process that takes the writer lock of ``dest`` and stops itself (a writer mid-way)."""
    code = (
        "import os, signal, sys; from tilepipe.core.scratch import WriterLock; "
        "lock = WriterLock(sys.argv[1]); os.kill(os.getpid(), signal.SIGSTOP)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(dest)])
    _, status = os.waitpid(proc.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status)
    return proc


def test_a_second_writer_of_a_locked_output_is_refused_naming_the_holder(tmp_path):
    holder = _holder(tmp_path / "dr.tif")
    try:
        with pytest.raises(InputError, match=f"dr.tif: being written by process {holder.pid}"):
            WriterLock(tmp_path / "dr.tif")
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_writers_lock_is_free_again(tmp_path):
    holder = _holder(tmp_path / "dr.tif")
    holder.kill()
    holder.wait()
    lock = WriterLock(tmp_path / "dr.tif")
    lock.release()
    assert not lock_path(tmp_path / "dr.tif").exists()


def test_the_same_process_may_take_its_own_lock_again(tmp_path):
    first = WriterLock(tmp_path / "dr.tif")
    second = WriterLock(tmp_path / "dr.tif")  # a step retrying in-process
    second.release()
    first.release()
