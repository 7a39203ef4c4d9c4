#!/usr/bin/env bash
# slurm-up.sh - a REAL single-node Slurm 22.05 cluster (Debian 12 packages) on which
# tests/test_slurm.py runs tilepipe's cluster profiles (profiles/saga, profiles/lumi, ...)
# through snakemake-executor-plugin-slurm, exactly as on the HPC systems:
#   - partitions named as on Saga, Betzy, LUMI and Eagle, all on this one node, so sbatch
#     really accepts (or rejects) the partition names a profile uses;
#   - fake GPUs (gres gpu:a100 and gpu:h100 on character devices), so --gpus=N, --gres=gpu:N
#     and --gpus=a100:N schedule and set CUDA_VISIBLE_DEVICES;
#   - accounting through slurmdbd + MariaDB, so `sacct` works (the plugin polls job status
#     with it) and shows partition, TRES and attempts afterwards; associations are enforced,
#     so jobs must name an existing account: one is created for the current user;
#   - the node advertises more CPUs/memory than the machine has (config_overrides), so the
#     profiles' requests (LUMI GPU jobs: 7 CPUs + 60000 MB) fit and jobs run side by side.
# Runs as root without systemd; idempotent: re-running rewrites the configs, starts only the
# daemons that are not running and resumes a drained node. Stop it with slurm-down.sh.
#
#   SLURM_CI_BASE      state/log/pid/fake-device dir              (default /tmp/tilepipe-slurm)
#   SLURM_CI_CPUS      CPUs advertised for the node               (default 32)
#   SLURM_CI_MEM_MB    RealMemory advertised, MB                  (default 256000)
#   SLURM_CI_GPUS      fake GPUs per type, "type:N ..."           (default "a100:4 h100:2")
#   SLURM_CI_ACCOUNT   Slurm account created for the current user (default tilepipe-ci)
set -euo pipefail

BASE=${SLURM_CI_BASE:-/tmp/tilepipe-slurm}
NCPUS=${SLURM_CI_CPUS:-32}
MEM_MB=${SLURM_CI_MEM_MB:-256000}
GPUS=${SLURM_CI_GPUS:-a100:4 h100:2}
ACCOUNT=${SLURM_CI_ACCOUNT:-tilepipe-ci}
CLUSTER=tilepipe-ci
ETC=/etc/slurm
H=$(hostname -s)
RUN=$BASE/run LOG=$BASE/log
t0=$(date +%s%N)
say() { local ds=$(( ($(date +%s%N) - t0) / 100000000 )); echo "[slurm-up $((ds / 10)).$((ds % 10))s] $*"; }
wait_for() { # wait_for <seconds> <cmd...>
  local n=$(( $1 * 10 )); shift
  for _ in $(seq 1 "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timeout waiting for: $*" >&2; return 1
}
running() { # running <pidfile> <comm>: true if the pid in pidfile is alive and is <comm>
  [ -s "$1" ] || return 1
  local pid; pid=$(cat "$1")
  [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$2" ]
}
[ "$(id -u)" = 0 ] || { echo "slurm-up.sh must run as root" >&2; exit 2; }

# ---------------------------------------------------------------- packages
pkgs="munge slurmctld slurmd slurm-client slurmdbd mariadb-server"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  say "installing:$missing"
  added_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then  # keep apt's post-install scripts from starting daemons
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; added_policy=1
  fi
  apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  [ "$added_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  say "packages installed"
fi

# ---------------------------------------------------------------- host, dirs, munge key, fake GPUs
getent hosts "$H" >/dev/null || echo "127.0.0.1 $H" >> /etc/hosts
mkdir -p "$BASE"/{state,spool,dev} "$RUN" "$LOG" "$ETC" /run/munge
chown munge:munge /run/munge; chmod 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
    || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
# gres/gpu needs File= entries that are character devices, else slurmd drains the node
node_gres="" gres_lines="" minor=0
for spec in $GPUS; do
  type=${spec%%:*} n=${spec##*:}
  first=$minor
  for _ in $(seq 1 "$n"); do
    dev=$BASE/dev/nvidia$minor
    [ -c "$dev" ] || { rm -f "$dev"; mknod "$dev" c 195 "$minor"; }
    minor=$((minor + 1))
  done
  node_gres="${node_gres:+$node_gres,}gpu:$type:$n"
  gres_lines="${gres_lines}NodeName=$H Name=gpu Type=$type File=$BASE/dev/nvidia[$first-$((minor - 1))]
"
done

# ---------------------------------------------------------------- configs
partitions=""
# Saga: normal bigmem hugemem a100 accel | Betzy: preproc accel | LUMI: small standard debug
# largemem small-g standard-g dev-g | Eagle: standard fast proxima-cpu proxima tesla
for p in normal bigmem hugemem a100 accel preproc small standard debug largemem small-g \
  standard-g dev-g fast proxima-cpu proxima tesla; do
  default=NO; [ "$p" = normal ] && default=YES
  partitions="${partitions}PartitionName=$p Nodes=ALL Default=$default MaxTime=INFINITE State=UP
"
done
old_conf=$(cat "$ETC/slurm.conf" "$ETC/gres.conf" 2>/dev/null || true)
cat > "$ETC/slurm.conf" <<EOF
# generated by tilepipe tests/slurm/slurm-up.sh - single-node test cluster
ClusterName=$CLUSTER
SlurmctldHost=$H
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without a default a job with no --mem takes the whole node and the others queue
DefMemPerCPU=500
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu,gres/gpu:a100,gres/gpu:h100
AccountingStorageEnforce=associations
# keep sbatch --comment in the database: the plugin puts rule_<rule>[_wildcards_...] there
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
# finished jobs stay visible to squeue for 10 min (the plugin's squeue fallback needs it)
MinJobAge=600
# let the node advertise more CPUs/memory than the machine really has
SlurmdParameters=config_overrides
NodeName=$H CPUs=$NCPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$NCPUS ThreadsPerCore=1 RealMemory=$MEM_MB Gres=$node_gres State=UNKNOWN
$partitions
EOF
printf '%s' "$gres_lines" > "$ETC/gres.conf"
conf_changed=0
[ "$old_conf" = "$(cat "$ETC/slurm.conf" "$ETC/gres.conf")" ] || conf_changed=1
cat > "$ETC/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=localhost
StoragePort=3306
StorageUser=slurm
StoragePass=tilepipe-ci
StorageLoc=slurm_acct_db
EOF
chmod 0600 "$ETC/slurmdbd.conf"
say "configs written to $ETC (node: $NCPUS CPUs, $MEM_MB MB, gres $node_gres)"

# ---------------------------------------------------------------- daemons
running /run/munge/munged.pid munged || runuser -u munge -- /usr/sbin/munged
wait_for 10 sh -c 'munge -n | unmunge'
say "munged up (pid $(cat /run/munge/munged.pid))"

mkdir -p /run/mysqld; chown mysql:mysql /run/mysqld
if ! running /run/mysqld/mariadbd.pid mariadbd; then
  # pid/log files must be writable by the mysql user
  /usr/sbin/mariadbd --user=mysql --datadir=/var/lib/mysql --socket=/run/mysqld/mysqld.sock \
    --skip-networking --pid-file=/run/mysqld/mariadbd.pid --log-error=/run/mysqld/mariadb.err \
    </dev/null >/dev/null 2>&1 &
fi
wait_for 60 mariadb -uroot -e 'select 1'
mariadb -uroot -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
  CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'tilepipe-ci';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
say "mariadb up (pid $(cat /run/mysqld/mariadbd.pid))"
running "$RUN/slurmdbd.pid" slurmdbd || /usr/sbin/slurmdbd
wait_for 30 sacctmgr -n show cluster
sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null 2>&1 || true
sacctmgr -i -Q add account "$ACCOUNT" Description=tilepipe-ci Organization=tilepipe >/dev/null 2>&1 || true
sacctmgr -i -Q add user "$(id -un)" Account="$ACCOUNT" >/dev/null 2>&1 || true
sacctmgr -n -P show assoc where account="$ACCOUNT" user="$(id -un)" format=account | grep -qx "$ACCOUNT" \
  || { echo "account $ACCOUNT for $(id -un) was not created" >&2; exit 1; }
say "slurmdbd up (pid $(cat "$RUN/slurmdbd.pid")), account $ACCOUNT"

stop_changed() { # stop_changed <pidfile> <comm>: stop a running daemon by its pid (node changes need a restart)
  running "$1" "$2" || return 0
  local pid; pid=$(cat "$1"); kill -TERM "$pid"
  for _ in $(seq 1 100); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
  say "stopped $2 ($pid): slurm.conf/gres.conf changed"
}
if [ "$conf_changed" = 1 ]; then stop_changed "$RUN/slurmd.pid" slurmd; stop_changed "$RUN/slurmctld.pid" slurmctld; fi
running "$RUN/slurmctld.pid" slurmctld || /usr/sbin/slurmctld
wait_for 30 scontrol ping
say "slurmctld up (pid $(cat "$RUN/slurmctld.pid"))"
running "$RUN/slurmd.pid" slurmd || /usr/sbin/slurmd
node_ok() { sinfo -h -n "$H" -o %T | grep -qE '^(idle|mixed|allocated)'; }
for _ in $(seq 1 100); do
  node_ok && break
  # a node left DRAINED/DOWN by an earlier run (state dir kept) must be resumed
  sinfo -h -n "$H" -o %T | grep -qE 'drain|down' && scontrol update nodename="$H" state=resume 2>/dev/null || true
  sleep 0.2
done
node_ok || { sinfo -N -l; tail -20 "$LOG/slurmd.log" "$LOG/slurmctld.log"; exit 1; }
say "slurmd up (pid $(cat "$RUN/slurmd.pid")), node $H: $(sinfo -h -n "$H" -o '%T cpus=%c mem=%m gres=%G' | head -1)"

# ---------------------------------------------------------------- smoke test
# a GPU job on a GPU partition under the account: scheduled, a GPU bound, accounted
out=$(timeout 60 srun -A "$ACCOUNT" -p a100 --gpus=1 -t 1 sh -c 'echo ok-$CUDA_VISIBLE_DEVICES')
case $out in ok-[0-9]*) ;; *) echo "smoke test failed: '$out'" >&2; exit 1 ;; esac
say "cluster ready: srun -A $ACCOUNT -p a100 --gpus=1 -> $out"
