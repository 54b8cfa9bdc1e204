#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the tests marked `slurm` and for trying
# `xmic slurm submit --executor slurm` without a real cluster.
#
#   bash scripts/slurm-local.sh up      install (apt, as root) if missing, start munged, MariaDB
#                                       (socket only), slurmdbd, slurmctld and slurmd; wait for the
#                                       node to be idle; print the SLURM_CONF to export
#   bash scripts/slurm-local.sh down    cancel jobs, stop every daemon by its pid, keep the logs
#   bash scripts/slurm-local.sh status  say whether it is up
#
# No systemd: the daemons are started by hand. All state (configs, spool, database, sockets,
# logs) lives under $XMIC_SLURM_DIR (default /tmp/xmic-slurm); `up` after `down` starts from
# nothing. Accounting (slurmdbd + MariaDB) is on because submitit needs sacct to notice jobs
# that were killed. Clients find the cluster through SLURM_CONF=$XMIC_SLURM_DIR/etc/slurm.conf.
set -euo pipefail
S="${XMIC_SLURM_DIR:-/tmp/xmic-slurm}"
CONF="$S/etc/slurm.conf"
HOST="$(hostname -s)"
PORT_BASE="${XMIC_SLURM_PORT_BASE:-6817}"   # slurmctld, slurmd = +1, slurmdbd = +2
DAEMONS=(slurmd slurmctld slurmdbd mysqld munged)   # stop order; start order is the reverse

log() { echo "slurm-local: $*" >&2; }
die() { log "error: $*"; exit 1; }
pid_of() { [[ -s "$S/run/$1.pid" ]] && cat "$S/run/$1.pid" || true; }
alive() { local p; p="$(pid_of "$1")"; [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2; shift 2
    local t=0
    until timeout 5 "$@" >/dev/null 2>&1; do
        sleep 0.5; t=$((t + 1))
        if (( t > limit * 2 )); then
            log "timed out after ${limit}s waiting for $what; logs in $S/log:"
            tail -n 20 "$S"/log/*.log >&2 || true
            exit 1
        fi
    done
}

install_packages() {
    local missing=()
    for cmd in slurmctld:slurmctld slurmd:slurmd slurmdbd:slurmdbd sbatch:slurm-client \
               munged:munge mariadbd:mariadb-server; do
        command -v "${cmd%%:*}" >/dev/null 2>&1 || missing+=("${cmd##*:}")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    [[ $(id -u) -eq 0 ]] || die "missing ${missing[*]}; run as root to install them with apt-get"
    log "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # policy-rc.d keeps the packages' own init scripts from starting daemons we start by hand
    apt-get install -y -qq --no-install-recommends slurm-wlm slurm-client slurmdbd munge \
        mariadb-server >/dev/null
}

write_configs() {
    local cpus mem_mb
    cpus="$(nproc)"
    mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
    mkdir -p "$S"/{etc,run,log,state,spool,mysql}
    cat > "$CONF" <<EOF
# written by scripts/slurm-local.sh
ClusterName=xmic
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$S/run/munge.socket
CredType=cred/munge
SlurmctldPort=$PORT_BASE
SlurmdPort=$((PORT_BASE + 1))
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/run/slurmctld.pid
SlurmdPidFile=$S/run/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobRequeue=1
MaxArraySize=${XMIC_SLURM_MAX_ARRAY_SIZE:-1001}
MinJobAge=300
KillWait=5
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$((PORT_BASE + 2))
AccountingStoragePass=$S/run/munge.socket
JobCompType=jobcomp/none
NodeName=$HOST CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    cat > "$S/etc/slurmdbd.conf" <<EOF
# written by scripts/slurm-local.sh
AuthType=auth/munge
AuthInfo=socket=$S/run/munge.socket
DbdHost=localhost
DbdPort=$((PORT_BASE + 2))
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
PidFile=$S/run/slurmdbd.pid
LogFile=$S/log/slurmdbd.log
EOF
    chmod 600 "$S/etc/slurmdbd.conf"
    cp /etc/slurm/plugstack.conf "$S/etc/" 2>/dev/null || true
}

start_munge() {
    # a private key: this one-node cluster shares it with nobody
    dd if=/dev/urandom of="$S/etc/munge.key" bs=1024 count=1 status=none
    chmod 400 "$S/etc/munge.key"
    munged --force --key-file="$S/etc/munge.key" --socket="$S/run/munge.socket" --pid-file="$S/run/munged.pid" \
        --log-file="$S/log/munged.log" --seed-file="$S/run/munged.seed"
    wait_for 10 munged munge --socket="$S/run/munge.socket" -n
}

start_mariadb() {
    if [[ ! -d "$S/mysql/mysql" ]]; then
        mariadb-install-db --no-defaults --user=root --datadir="$S/mysql" --skip-test-db \
            --auth-root-authentication-method=socket >"$S/log/mysql-install.log" 2>&1 \
            || die "mariadb-install-db failed; see $S/log/mysql-install.log"
    fi
    # --no-defaults: no system my.cnf (packages may leave options for plugins that are gone)
    mariadbd --no-defaults --user=root --datadir="$S/mysql" --socket="$S/run/mysqld.sock" --skip-networking \
        --pid-file="$S/run/mysqld.pid" --log-error="$S/log/mysqld.log" \
        --innodb-buffer-pool-size=64M --skip-log-bin >/dev/null 2>&1 &
    wait_for 30 MariaDB mariadb --no-defaults --socket="$S/run/mysqld.sock" -e "select 1"
}

start_slurm() {
    export SLURM_CONF="$CONF"
    # slurmdbd reaches MariaDB on its socket: the client library reads MYSQL_UNIX_PORT
    MYSQL_UNIX_PORT="$S/run/mysqld.sock" slurmdbd
    wait_for 30 slurmdbd sacctmgr -n list cluster
    sacctmgr -i -Q add cluster xmic >/dev/null 2>&1 || true
    slurmctld -i
    wait_for 30 slurmctld scontrol ping
    slurmd
    wait_for 45 "node $HOST idle" bash -c "sinfo -h -n '$HOST' -o %t | grep -qx idle"
}

ours() {  # the folder is absent, empty, or one this script made (its slurm.conf says so)
    [[ ! -e "$S" ]] || [[ -z "$(ls -A "$S" 2>/dev/null)" ]] ||
        head -n 1 "$CONF" 2>/dev/null | grep -qx "# written by scripts/slurm-local.sh"
}

port_taken() {  # something listens on 127.0.0.1:$1
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

up() {
    if alive slurmctld && alive slurmd && SLURM_CONF="$CONF" scontrol ping >/dev/null 2>&1; then
        log "already up"
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    ours || die "$S holds files this script did not write; it is not cleared: set XMIC_SLURM_DIR \
to a new folder"
    down quiet
    for p in "$PORT_BASE" $((PORT_BASE + 1)) $((PORT_BASE + 2)); do
        if port_taken "$p"; then
            die "port $p is in use by another program (another cluster?); set XMIC_SLURM_PORT_BASE \
to a free base (the cluster uses it and the next two ports)"
        fi
    done
    install_packages
    rm -rf "$S"
    local t0=$SECONDS
    write_configs
    start_munge
    start_mariadb
    start_slurm
    log "up in $((SECONDS - t0))s: node $HOST idle, accounting on; logs in $S/log"
    echo "export SLURM_CONF=$CONF"
}

down() {
    if alive slurmctld; then
        SLURM_CONF="$CONF" scancel --full --quiet --partition=debug 2>/dev/null || true
        sleep 1
    fi
    local any=0
    for d in "${DAEMONS[@]}"; do
        local p; p="$(pid_of "$d")"
        [[ -n "$p" ]] || continue
        if kill -0 "$p" 2>/dev/null; then
            kill "$p" 2>/dev/null || true
            any=1
            for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
            kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null || true
        fi
        rm -f "$S/run/$d.pid"
    done
    # job steps of this cluster outlive slurmd; stop those whose config is ours
    for p in $(pgrep -x slurmstepd 2>/dev/null || true); do
        grep -qs "$S" "/proc/$p/cmdline" "/proc/$p/environ" && kill -9 "$p" 2>/dev/null || true
    done
    [[ "${1:-}" == quiet ]] || log "down$([[ $any == 0 ]] && echo ' (nothing was running)')"
}

status() {
    if alive slurmctld && SLURM_CONF="$CONF" scontrol ping >/dev/null 2>&1; then
        echo "up: SLURM_CONF=$CONF"
        SLURM_CONF="$CONF" sinfo
    else
        echo "down"
        return 1
    fi
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
