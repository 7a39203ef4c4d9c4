#!/usr/bin/env bash
# slurm-down.sh - stop the test cluster started by tests/slurm/slurm-up.sh: cancel what is
# still queued or running, then stop slurmd, slurmctld, slurmdbd, MariaDB and munged by the
# PIDs in their pid files (never by name). `--purge` also deletes the Slurm state and logs
# (the accounting database in MariaDB is kept; its jobs belong to the cluster "tilepipe-ci").
#
#   SLURM_CI_BASE      the directory slurm-up.sh used (default /tmp/tilepipe-slurm)
set -uo pipefail
BASE=${SLURM_CI_BASE:-/tmp/tilepipe-slurm}
RUN=$BASE/run

stop() { # stop <pidfile> <comm>
  local f=$1 comm=$2 pid
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  if [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$comm" ]; then
    kill -TERM "$pid"
    for _ in $(seq 1 100); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
    if [ -e "/proc/$pid" ]; then echo "$comm ($pid) ignored SIGTERM, sending SIGKILL"; kill -KILL "$pid"; fi
    echo "stopped $comm ($pid)"
  fi
  rm -f "$f"
}

# cancel whatever is still queued/running so no slurmstepd is left behind
if [ -s "$RUN/slurmctld.pid" ] && command -v squeue >/dev/null; then
  ids=$(squeue -h -t PD,R,CG,S -o %A 2>/dev/null | sort -u | tr '\n' ' ')
  if [ -n "${ids// }" ]; then
    # shellcheck disable=SC2086
    scancel $ids
    for _ in $(seq 1 50); do [ -z "$(squeue -h -t R,CG -o %A 2>/dev/null)" ] && break; sleep 0.2; done
    echo "cancelled jobs: $ids"
  fi
fi
stop "$RUN/slurmd.pid"        slurmd
stop "$RUN/slurmctld.pid"     slurmctld
stop "$RUN/slurmdbd.pid"      slurmdbd
stop /run/mysqld/mariadbd.pid mariadbd
stop /run/munge/munged.pid    munged
if [ "${1:-}" = --purge ]; then
  rm -rf "$BASE/state" "$BASE/spool" "$BASE/log"
  echo "purged $BASE/{state,spool,log}"
fi
exit 0
