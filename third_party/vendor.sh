#!/usr/bin/env bash
# The patched burn crates of this folder are crates.io's sources plus our patches
# (third_party/patches/<crate>-<version>.patch). This script rebuilds or checks them.
#
#   bash third_party/vendor.sh           rewrite third_party/<crate> from crates.io + the patch
#   bash third_party/vendor.sh --check   exit 1 if a committed copy is not crates.io + the patch
#   bash third_party/vendor.sh --diff    rewrite the patches from the committed copies (after
#                                        editing a copy)
#
# The original crate comes from cargo's download cache when it is there, otherwise from
# static.crates.io. See third_party/README.md for moving to a new burn version.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mode=${1:-apply}
case "$mode" in apply | --check | --diff) ;; *)
  echo "usage: $0 [--check | --diff]" >&2
  exit 2
  ;;
esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# original CRATE VERSION DIR: the published sources of CRATE VERSION in DIR (without the two
# files cargo adds on publishing that a path dependency does not use).
original() {
  local crate=$1 version=$2 dir=$3 archive
  archive=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$crate-$version.crate" 2>/dev/null | head -1 || true)
  if [ -z "$archive" ]; then
    archive="$work/$crate-$version.crate"
    curl -sSfL -o "$archive" "https://static.crates.io/crates/$crate/$crate-$version.crate"
  fi
  mkdir -p "$dir"
  tar xzf "$archive" -C "$dir" --strip-components=1
  rm -f "$dir/.cargo_vcs_info.json" "$dir/Cargo.lock"
}

status=0
for patch in "$here"/patches/*.patch; do
  name=$(basename "$patch" .patch)
  crate=${name%-*}
  version=${name##*-}
  rm -rf "$work/a" "$work/b"
  original "$crate" "$version" "$work/a"
  case "$mode" in
  --diff)
    cp -r "$here/$crate" "$work/b"
    (cd "$work" && diff -ruN a b >"$patch") || [ $? -eq 1 ]
    echo "wrote $patch"
    ;;
  *)
    cp -r "$work/a" "$work/b"
    patch -s -p1 -d "$work/b" <"$patch"
    if [ "$mode" = --check ]; then
      if diff -r "$work/b" "$here/$crate" >/dev/null; then
        echo "$crate: crates.io $version + $(basename "$patch")"
      else
        echo "$crate: the committed copy differs from crates.io $version + $(basename "$patch"):" >&2
        diff -rq "$work/b" "$here/$crate" >&2 || true
        status=1
      fi
    else
      rm -rf "${here:?}/$crate"
      cp -r "$work/b" "$here/$crate"
      echo "rebuilt third_party/$crate from crates.io $version + $(basename "$patch")"
    fi
    ;;
  esac
done
exit $status
