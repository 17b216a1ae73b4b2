# A one-node Slurm cluster in a scratch directory, for tests: `cluster_start DIR` starts munged,
# slurmctld and slurmd (as root, with a generated slurm.conf) and exports SLURM_CONF; `cluster_stop DIR`
# stops every daemon it started, by PID. Needs Debian's slurm-wlm and munge.

cluster_free_port() {
	# a port nobody listens on, from a range unlikely to be taken
	p=$1
	while ss -ltn 2>/dev/null | awk '{ print $4 }' | grep -q ":$p\$"; do p=$((p + 1)); done
	echo $p
}

cluster_start() {
	d=$1
	mkdir -p "$d/munge" "$d/state" "$d/spool" "$d/log"
	chmod 700 "$d/munge"
	dd if=/dev/urandom of="$d/munge/munge.key" bs=1 count=1024 2>/dev/null
	chmod 400 "$d/munge/munge.key"
	munged --force --key-file="$d/munge/munge.key" --socket="$d/munge/munge.sock" \
		--pid-file="$d/munge/munged.pid" --log-file="$d/log/munged.log" --seed-file="$d/munge/seed" || return 1
	host=$(hostname -s)
	cpus=$(nproc)
	mem=$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.8 }' /proc/meminfo)
	cport=$(cluster_free_port 16817)
	dport=$(cluster_free_port $((cport + 1)))
	cat >"$d/slurm.conf" <<CONF
ClusterName=tracertest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$cport
SlurmdPort=$dport
AuthType=auth/munge
AuthInfo=socket=$d/munge/munge.sock
CredType=cred/munge
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
MinJobAge=30
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=tracer Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
	SLURM_CONF=$d/slurm.conf
	export SLURM_CONF
	slurmctld -f "$d/slurm.conf" || return 1
	slurmd -f "$d/slurm.conf" || return 1
	# wait until the node takes jobs
	i=0
	while [ $i -lt 100 ]; do
		sinfo -h -o '%t' 2>/dev/null | grep -Eq '^(idle|mix|alloc)' && return 0
		sleep 0.2
		i=$((i + 1))
	done
	echo "cluster: the node never became idle" >&2
	return 1
}

cluster_stop() {
	d=$1
	for f in "$d/slurmd.pid" "$d/slurmctld.pid" "$d/munge/munged.pid"; do
		[ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null
	done
	sleep 0.5
	for f in "$d/slurmd.pid" "$d/slurmctld.pid" "$d/munge/munged.pid"; do
		[ -s "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
	done
	return 0
}
