#!/usr/bin/env bash
# Slurm accounting for the one-node test cluster: MariaDB + Debian's slurmdbd 22.05, so runner's
# `sacct` path (jobs squeue no longer knows) is tested against the real sacct. Called by
# .ci/slurm-up.sh after munged is up and BEFORE slurmctld (re)starts: a slurmctld configured with
# AccountingStorageType=accounting_storage/slurmdbd that has never reached slurmdbd stops at start.
# Run as root; idempotent and quick when everything already runs (a few status calls).
#
# No systemd here: mariadbd and slurmdbd are started directly. MariaDB listens on its unix socket
# only (--skip-networking); slurmdbd runs as SlurmUser `slurm` and logs in as the MariaDB user
# `slurm` through unix_socket authentication, so there is no database password to keep anywhere.
set -euo pipefail

log() { printf '[slurmdbd-up %(%H:%M:%S)T] %s\n' -1 "$*"; }
running() { pgrep -x "$1" >/dev/null; }

install_missing() {
  local need=()
  command -v slurmdbd >/dev/null || need+=(slurmdbd)
  command -v mariadbd >/dev/null || need+=(mariadb-server)
  [ ${#need[@]} -gt 0 ] || return 0
  log "apt-get install ${need[*]}"
  if [ ! -e /usr/sbin/policy-rc.d ]; then   # no daemon may start from a postinst: this script starts them
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
}

db_answers() { mariadb-admin --silent ping >/dev/null 2>&1; }

start_mariadb() {
  db_answers && return 0
  mkdir -p /run/mysqld /var/log/mysql && chown mysql:mysql /run/mysqld /var/log/mysql
  if [ ! -d /var/lib/mysql/mysql ]; then
    log "mariadb-install-db"
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  fi
  log "starting mariadbd (unix socket only)"
  setsid mariadbd --user=mysql --skip-networking </dev/null >>/var/log/mysql/mariadbd.log 2>&1 &
  for _ in $(seq 1 60); do db_answers && return 0; sleep 0.5; done
  echo "mariadbd does not answer; see /var/log/mysql/mariadbd.log" >&2
  tail -20 /var/log/mysql/mariadbd.log >&2
  exit 1
}

grant_slurm() {
  mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED VIA unix_socket;
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
}

# The configuration; prints 1 when it changed (slurmdbd must then restart to read it).
write_conf() {
  local conf
  conf=$(cat <<'EOF'
# written by runner's .ci/slurmdbd-up.sh: accounting for the one-node test cluster
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StorageLoc=slurm_acct_db
EOF
)
  local changed=0
  if [ "$(cat /etc/slurm/slurmdbd.conf 2>/dev/null)" != "$conf" ]; then
    printf '%s\n' "$conf" >/etc/slurm/slurmdbd.conf
    changed=1
  fi
  chown slurm:slurm /etc/slurm/slurmdbd.conf && chmod 600 /etc/slurm/slurmdbd.conf   # slurmdbd refuses others
  echo $changed
}

dbd_answers() { sacctmgr -n -P list cluster format=cluster >/dev/null 2>&1; }

start_slurmdbd() {
  local changed=$1
  if [ "$changed" = 1 ] && running slurmdbd && [ -s /run/slurmdbd.pid ]; then
    log "configuration changed: stopping slurmdbd"; kill "$(cat /run/slurmdbd.pid)" || true
    for _ in $(seq 1 20); do running slurmdbd || break; sleep 0.5; done
  fi
  if ! running slurmdbd; then log "starting slurmdbd"; slurmdbd; fi
  for _ in $(seq 1 60); do dbd_answers && return 0; sleep 0.5; done
  echo "slurmdbd does not answer; see /var/log/slurm/slurmdbd.log" >&2
  tail -20 /var/log/slurm/slurmdbd.log >&2
  exit 1
}

add_cluster() {
  local name=$1
  if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$name"; then
    log "sacctmgr add cluster $name"
    sacctmgr -i add cluster "$name" >/dev/null
  fi
}

install_missing
mkdir -p /etc/slurm /var/log/slurm && chown slurm:slurm /var/log/slurm
start_mariadb
grant_slurm
start_slurmdbd "$(write_conf)"
add_cluster "${1:-runner}"
log "slurmdbd $(slurmdbd -V | cut -d' ' -f2) on mariadb $(mariadbd --version | awk '{print $3}'): cluster ${1:-runner}"
