# Shared start of the benchmark scripts:
#
#   source "$(dirname "$0")/common.sh"   # strict mode, then the repository root as working folder
#   bench_start [--keep-nnunet]
#
# bench_start sets REF (the nnU-Net v2.8.1 reference environment, NNUNET_REF or
# ~/.cache/nnunet-reference, installed by ../shared/reference/setup.sh where missing) and PY (its
# python), NNUNET (the release build of nnunet-cli, built here; with --keep-nnunet a NNUNET already
# set skips the build) and WORK (a temporary folder, removed on exit).

set -euo pipefail
cd "$(dirname "$0")/.."

bench_start() {
  REF=${NNUNET_REF:-$HOME/.cache/nnunet-reference}
  [ -x "$REF/venv/bin/python" ] || bash ../shared/reference/setup.sh >/dev/null
  PY="$REF/venv/bin/python"
  if [ "${1:-}" != --keep-nnunet ] || [ -z "${NNUNET:-}" ]; then
    cargo build --release -q -p nnunet-cli
    NNUNET=$PWD/target/release/nnunet
  fi
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
}
