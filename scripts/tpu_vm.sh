#!/usr/bin/env bash
# Runs a jaxplay study on a Cloud TPU VM slice: create the slice, copy this checkout to every
# worker and install it, run the sweep on all workers at once (they form one jax.distributed job
# that trains each trial over every chip), then delete the slice.
#
#   scripts/tpu_vm.sh all    --name NAME --zone ZONE --type v5litepod-16 --config experiments/x.py \
#                            --workdir gs://BUCKET/studies [--version tpu-ubuntu2204-base] [-- SWEEP FLAGS]
#   scripts/tpu_vm.sh create|setup|run|delete  (the same flags; `all` runs the four in order and
#                            deletes the slice even when the sweep fails)
#
# The study store must be reachable from every worker: export JAXPLAY_STORE=postgresql+psycopg://
# user:password@host/db before running. It is copied to the workers in a file readable only by
# its owner, never put on a command line, and never printed (the sweep redacts it too).
# Checkpoints go to the shared --workdir bucket. Rerunning `run` resumes the study: finished
# trials are kept, an interrupted one continues from its latest checkpoint (a preempted slice
# gets SIGTERM and checkpoints first).
set -euo pipefail

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[[ $# -ge 1 ]] || usage
step=$1; shift
name="" zone="" type="" config="" workdir="" version="tpu-ubuntu2204-base"
extra=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --name) name=$2; shift 2;;
    --zone) zone=$2; shift 2;;
    --type) type=$2; shift 2;;
    --config) config=$2; shift 2;;
    --workdir) workdir=$2; shift 2;;
    --version) version=$2; shift 2;;
    --) shift; extra=("$@"); break;;
    *) echo "error: unknown flag $1" >&2; usage;;
  esac
done
need() { [[ -n ${!1} ]] || { echo "error: --$1 is required (see: $0 with no arguments)" >&2; exit 2; }; }
need name; need zone
repo=$(cd "$(dirname "$0")/.." && pwd)
tpu=(gcloud compute tpus tpu-vm)

# What must happen however the script ends (done, a failing command under set -e, Ctrl-C, SIGTERM
# or SIGHUP: bash runs its EXIT trap for each): the steps named by on_exit, the latest first. One
# trap runs them all, since a second `trap ... EXIT` would replace the first.
exit_steps=()
on_exit() { exit_steps=("$1" ${exit_steps[@]+"${exit_steps[@]}"}); }
run_exit_steps() {
  local status=$? step
  for step in ${exit_steps[@]+"${exit_steps[@]}"}; do
    "$step" || status=$((status == 0 ? 1 : status))  # a failed cleanup fails the script
  done
  exit "$status"
}
trap run_exit_steps EXIT

# This run's own folder (mode 700, in $TMPDIR) for the code archive and the file holding the store
# URL while they are copied; removed however the script ends.
scratch=""
remove_scratch() { [[ -z $scratch ]] || rm -rf -- "$scratch"; }
on_exit remove_scratch  # first: no way out leaves the folder behind
scratch=$(mktemp -d)

create() {
  need type
  echo "creating TPU VM slice $name ($type) in $zone"
  "${tpu[@]}" create "$name" --zone="$zone" --accelerator-type="$type" --version="$version"
}

setup() {
  echo "copying $repo to every worker of $name and installing it"
  local archive=$scratch/jaxplay.tar.gz
  # The committed tree plus uncommitted edits of tracked files: what `git status` shows as yours.
  (cd "$repo" && git ls-files -z | tar --null -czf "$archive" -T -)
  "${tpu[@]}" scp "$archive" "$name:jaxplay.tar.gz" --zone="$zone" --worker=all
  "${tpu[@]}" ssh "$name" --zone="$zone" --worker=all --command \
    "mkdir -p jaxplay && tar -xzf jaxplay.tar.gz -C jaxplay && cd jaxplay && pip install -q -e '.[gcs,postgres]' 'jax[tpu]'"
}

run() {
  need config; need workdir
  [[ $workdir == gs://* ]] || { echo "error: --workdir must be a gs:// bucket path that every worker shares (got $workdir)" >&2; exit 2; }
  [[ -n ${JAXPLAY_STORE:-} ]] || { echo "error: export JAXPLAY_STORE=postgresql+psycopg://user:password@host/db: a store every worker reaches" >&2; exit 2; }
  local secret=$scratch/jaxplay_store  # if scp fails, removed with $scratch
  (umask 077 && printf '%s' "$JAXPLAY_STORE" > "$secret")  # readable by its owner only
  "${tpu[@]}" scp "$secret" "$name:.jaxplay_store" --zone="$zone" --worker=all
  rm -f -- "$secret"  # copied: not kept here while the sweep runs
  # The workers' login shell (bash) parses this line again: every argument goes quoted in bash's
  # form, so a path with spaces or shell characters arrives as one argument and runs nothing.
  local sweep
  sweep=$(printf '%q ' python -m jaxplay.sweep "--config=$config" "--workdir=$workdir" \
    --distributed ${extra[@]+"${extra[@]}"})
  sweep=${sweep% }
  echo "running on every worker of $name: $sweep"
  "${tpu[@]}" ssh "$name" --zone="$zone" --worker=all --command \
    "chmod 600 ~/.jaxplay_store && cd jaxplay && JAXPLAY_STORE=\$(cat ~/.jaxplay_store) $sweep"
}

delete() {
  echo "deleting TPU VM slice $name"
  "${tpu[@]}" delete "$name" --zone="$zone" --quiet
}

case $step in
  create) create;;
  setup) setup;;
  run) run;;
  delete) delete;;
  all)
    create
    on_exit delete  # a failed setup or sweep still gives the slice back
    setup
    run;;
  *) usage;;
esac
