#!/bin/sh
# Runs experiment specs on a Slurm cluster: one job array per spec over its unfinished cells (task i =
# cell i), then a collector job that depends on all arrays (afterany). Waits for the collector unless
# --no-wait. Resubmitting after failures or preemption submits only the cells still missing.
#
#   scripts/slurm-submit.sh SPEC... [--results DIR] [--paper PAPER.md] [--tables NAME] [--cpus N]
#                           [--mem MB] [--time MIN] [--max-running M] [--no-wait]
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TRACER=${TRACER:-$ROOT/tracer}
RESULTS=$ROOT/results PAPER="" TABLES="" CPUS=1 MEM=4000 TIME=60 MAXRUN=8 WAIT=1 SPECS=""
while [ $# -gt 0 ]; do
	case $1 in
	--results) RESULTS=$2; shift ;;
	--paper) PAPER=$2; shift ;;
	--tables) TABLES=$2; shift ;;
	--cpus) CPUS=$2; shift ;;
	--mem) MEM=$2; shift ;;
	--time) TIME=$2; shift ;;
	--max-running) MAXRUN=$2; shift ;;
	--no-wait) WAIT=0 ;;
	-*) echo "slurm-submit: unknown option $1" >&2; exit 2 ;;
	*) SPECS="$SPECS $1" ;;
	esac
	shift
done
[ -n "$SPECS" ] || { echo "slurm-submit: no spec given" >&2; exit 2; }
case $RESULTS in /*) ;; *) RESULTS=$(pwd)/$RESULTS ;; esac
mkdir -p "$RESULTS/slurm"
rm -f "$RESULTS/slurm/collect.status"
export TRACER RESULTS ROOT
deps=""
for spec in $SPECS; do
	case $spec in /*) ;; *) spec=$(pwd)/$spec ;; esac
	missing=$("$TRACER" sweep "$spec" --missing --results "$RESULTS")
	name=$(basename "$spec" .spec)
	if [ -z "$missing" ]; then
		echo "slurm-submit: $name: every cell is finished"
		continue
	fi
	count=$(echo "$missing" | tr ',' '\n' | wc -l)
	job=$(SPEC=$spec sbatch --parsable --array="$missing%$MAXRUN" --cpus-per-task="$CPUS" --mem="$MEM" \
		--time="$TIME" --output="$RESULTS/slurm/$name-%a.log" --export=ALL,SPEC="$spec",CELL_THREADS="$CPUS" \
		"$ROOT/experiments/slurm/cell.sbatch")
	echo "slurm-submit: $name: job $job, $count cells ($missing)"
	deps="$deps:$job"
done
abs=""
for spec in $SPECS; do case $spec in /*) abs="$abs $spec" ;; *) abs="$abs $(pwd)/$spec" ;; esac; done
collector=$(SPECS=$abs PAPER=$PAPER TABLES=$TABLES sbatch --parsable ${deps:+--dependency=afterany$deps} \
	--output="$RESULTS/slurm/collect.log" --export=ALL,SPECS="$abs",PAPER="$PAPER",TABLES="$TABLES" \
	"$ROOT/experiments/slurm/collect.sbatch")
echo "slurm-submit: collector job $collector (after${deps:+ $deps})"
[ $WAIT = 1 ] || exit 0
while [ -n "$(squeue -h -j "$collector" 2>/dev/null)" ]; do sleep 1; done
status=$(cat "$RESULTS/slurm/collect.status" 2>/dev/null || echo "none")
if [ "$status" != 0 ]; then
	echo "slurm-submit: the collector failed (status $status); see $RESULTS/slurm/collect.log:" >&2
	grep -E '^(missing|collect|tracer)' "$RESULTS/slurm/collect.log" >&2 || true
	exit 1
fi
echo "slurm-submit: done; tables in $RESULTS/tables"
