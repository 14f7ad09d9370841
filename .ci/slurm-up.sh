#!/usr/bin/env bash
# A one-node Slurm cluster on this machine (Debian's slurm-wlm 22.05 + munge), for the Slurm
# executor's tests (tests/slurm). The hidden partition `urgent` (a higher PriorityTier, PreemptMode
# CANCEL) is how the tests preempt a runner job for real. Run as root; idempotent: a running
# cluster with the same configuration is left alone, a changed configuration is rewritten and the
# daemons restarted.
#
# The node declares no GRES (no Gres= line, no gres.conf): a spec asking for `gres: gpu:1` must be
# refused at plan time, which is what tests/slurm checks. Accounting is on: .ci/slurmdbd-up.sh
# (MariaDB + slurmdbd, started before slurmctld) keeps every job's record, so runner's `sacct`
# lookup of jobs squeue no longer knows (after MinJobAge) meets the real sacct
# (tests/slurm/test_slurm_accounting.py).
set -euo pipefail

log() { printf '[slurm-up %(%H:%M:%S)T] %s\n' -1 "$*"; }

need=()
command -v slurmctld >/dev/null || need+=(slurmctld)
command -v slurmd >/dev/null || need+=(slurmd)
command -v sbatch >/dev/null || need+=(slurm-client)
command -v munged >/dev/null || need+=(munge)
if [ ${#need[@]} -gt 0 ]; then
  log "apt-get install ${need[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

# munge: one key, one daemon.
if [ ! -s /etc/munge/munge.key ]; then
  mungekey --create >/dev/null
fi
chown munge:munge /etc/munge/munge.key && chmod 600 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "starting munged"
  su -s /bin/sh munge -c /usr/sbin/munged
  for _ in $(seq 1 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
fi
munge -n | unmunge >/dev/null || { echo "munged does not answer" >&2; exit 1; }

host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)   # leave the OS its share
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
chown slurm:slurm /var/spool/slurmctld /var/log/slurm
conf=$(cat <<EOF
# written by runner's .ci/slurm-up.sh: a one-node test cluster
ClusterName=runner
SlurmctldHost=${host}(127.0.0.1)   # one node: always this machine, whatever DNS says
AuthType=auth/munge
SlurmUser=slurm
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
MaxArraySize=10001
MaxJobCount=20000
MinJobAge=300
KillWait=10
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
ReturnToService=2
PreemptType=preempt/partition_prio
PreemptMode=CANCEL
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem_mb} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=urgent Nodes=ALL PriorityTier=10 Hidden=YES MaxTime=INFINITE State=UP
EOF
)
# A changed slurm.conf leaves a mark in /run until the daemons restart: a run that stops between
# writing it and the restart (slurmdbd did not come up) restarts them the next time.
pending=/run/slurm-up.restart-pending
if [ "$(cat /etc/slurm/slurm.conf 2>/dev/null)" != "$conf" ]; then
  printf '%s\n' "$conf" >/etc/slurm/slurm.conf
  touch $pending
fi
changed=0
[ ! -e $pending ] || changed=1
if [ "$(cat /etc/slurm/cgroup.conf 2>/dev/null)" != "CgroupPlugin=autodetect" ]; then
  echo "CgroupPlugin=autodetect" >/etc/slurm/cgroup.conf   # "disabled" is unknown to 22.05
fi

# accounting before slurmctld (re)starts: configured with slurmdbd, it must reach it when it starts;
# sacctmgr (the cluster's registration) reads the slurm.conf just written
bash "$(dirname "$0")/slurmdbd-up.sh" runner

running() { pgrep -x "$1" >/dev/null; }
if [ $changed = 1 ]; then
  for d in slurmctld slurmd; do
    if running $d && [ -s /run/$d.pid ]; then
      log "configuration changed: stopping $d"; kill "$(cat /run/$d.pid)" || true
    fi
  done
  for _ in $(seq 1 20); do running slurmctld || running slurmd || break; sleep 0.5; done
fi
if ! running slurmctld; then log "starting slurmctld"; slurmctld; fi
if ! running slurmd; then log "starting slurmd"; slurmd; fi
rm -f $pending
for _ in $(seq 1 60); do
  state=$(sinfo -h -n "$host" -o %t 2>/dev/null || true)
  case "$state" in idle*|mix*|alloc*) break ;; esac
  sleep 1
done
case "$state" in
  idle*|mix*|alloc*) ;;
  down*|drain*) scontrol update NodeName="$host" State=RESUME || true ;;
  *) echo "slurm node $host not up (state '$state'); see /var/log/slurm/" >&2; exit 1 ;;
esac
log "slurm $(sinfo --version | cut -d' ' -f2): node $host ($cpus CPUs, $mem_mb MB), partition debug"
