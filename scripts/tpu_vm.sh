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

create() {
  need type
  echo "creating TPU VM slice $name ($type) in $zone"
  "${tpu[@]}" create "$name" --zone="$zone" --accelerator-type="$type" --version="$version"
}

setup() {
  echo "copying $repo to every worker of $name and installing it"
  local archive
  archive=$(mktemp -d)/jaxplay.tar.gz
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
  local secret
  secret=$(mktemp)
  chmod 600 "$secret"
  printf '%s' "$JAXPLAY_STORE" > "$secret"
  "${tpu[@]}" scp "$secret" "$name:.jaxplay_store" --zone="$zone" --worker=all
  rm -f "$secret"
  local sweep="python -m jaxplay.sweep --config=$config --workdir=$workdir --distributed"
  [[ ${#extra[@]} -eq 0 ]] || sweep+=" $(printf '%q ' "${extra[@]}")"
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
    trap delete EXIT  # a failed setup or sweep still gives the slice back
    setup
    run;;
  *) usage;;
esac
