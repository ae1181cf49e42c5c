#!/usr/bin/env bash
# Build an offline wheelhouse on a connected machine: Tether's wheel, a wheel of every
# dependency, and the installer, ready to copy to an air-gapped serving host.
set -euo pipefail

readonly PROG=build-wheelhouse.sh
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR
SOURCE_DIR=$(dirname "$SCRIPT_DIR")
readonly SOURCE_DIR

usage() {
  cat <<'EOF'
Usage: build-wheelhouse.sh [--dest DIR] [--python PATH] [--python-version X.Y] [--platform TAG]...

Build a wheelhouse for scripts/install-agent.sh --wheelhouse: a wheel of this source tree and
of every dependency, plus install-agent.sh and tether-agent.service, with SHA256SUMS. Needs
the package index; the host it is copied to needs no network.

  --dest DIR            Where to put it [dist/wheelhouse in the source tree].
  --python PATH         Python whose pip builds it [python3.11, else python3]. Without the
                        two flags below, the wheels are for this Python and this machine.
  --python-version X.Y  Target another Python version (e.g. 3.12): binary wheels only.
  --platform TAG        Target another platform (e.g. manylinux2014_aarch64); repeatable,
                        binary wheels only. The target's Python must match --python-version
                        (or this Python's version).
  -h, --help            Show this help.

Example:
  scripts/build-wheelhouse.sh --dest /tmp/tether-wheelhouse --python-version 3.11 \
      --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64
EOF
}

usage_error() {
  printf '%s: error: %s\nRun %s --help for the flags.\n' "$PROG" "$*" "$PROG" >&2
  exit 2
}

DEST=$SOURCE_DIR/dist/wheelhouse
PYTHON=""
PYTHON_VERSION=""
PLATFORMS=()
while (($#)); do
  flag=$1
  shift
  case $flag in
    --dest | --python | --python-version | --platform)
      if (($# == 0)) || [[ $1 == --* || -z $1 ]]; then
        usage_error "$flag needs a value"
      fi
      case $flag in
        --dest) DEST=$1 ;;
        --python) PYTHON=$1 ;;
        --python-version) PYTHON_VERSION=$1 ;;
        --platform) PLATFORMS+=("$1") ;;
      esac
      shift
      ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown flag $flag" ;;
  esac
done

[[ -f $SOURCE_DIR/pyproject.toml ]] || usage_error "no Tether source tree at $SOURCE_DIR"
[[ -z $PYTHON_VERSION || $PYTHON_VERSION =~ ^3\.[0-9]+$ ]] ||
  usage_error "--python-version $PYTHON_VERSION is not X.Y (e.g. 3.11)"
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3 || true)}
if [[ -z $PYTHON ]] || ! command -v -- "$PYTHON" >/dev/null; then
  usage_error "no Python${PYTHON:+ at $PYTHON} found: pass --python PATH"
fi
mkdir -p -- "$DEST"
DEST=$(cd -- "$DEST" && pwd -P)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tether-wheelhouse.XXXXXX")
trap 'rm -rf -- "$WORK"' EXIT

# Build from a clean copy: setuptools' build/ in the tree can hold stale modules.
tar -C "$SOURCE_DIR" -cf - --exclude=.git --exclude='.venv*' --exclude=build --exclude=dist \
  --exclude='*.egg-info' --exclude=__pycache__ --exclude='.*_cache' --exclude=.hypothesis \
  --exclude=tether-data --exclude=tether-agent --exclude=node_modules . | tar -C "$WORK" -xf -
rm -f -- "$DEST"/tether-*.whl

pip=("$PYTHON" -m pip --disable-pip-version-check)
if [[ -z $PYTHON_VERSION && ${#PLATFORMS[@]} -eq 0 ]]; then
  "${pip[@]}" wheel --quiet -w "$DEST" "$WORK"
else
  # pip cannot build for another interpreter: take the published binary wheels instead.
  "${pip[@]}" wheel --quiet --no-deps -w "$DEST" "$WORK"
  target=(--only-binary=:all: --implementation cp)
  [[ -z $PYTHON_VERSION ]] || target+=(--python-version "$PYTHON_VERSION")
  for platform in ${PLATFORMS[@]+"${PLATFORMS[@]}"}; do
    target+=(--platform "$platform")
  done
  "${pip[@]}" download --quiet "${target[@]}" -d "$DEST" "$DEST"/tether-*.whl
fi

cp -- "$SCRIPT_DIR/install-agent.sh" "$SOURCE_DIR/config/tether-agent.service" "$DEST/"
(cd "$DEST" && sha256sum -- *.whl install-agent.sh tether-agent.service >SHA256SUMS)

wheel=$(basename -- "$(compgen -G "$DEST/tether-*.whl" | head -n 1)")
count=$(compgen -G "$DEST/*.whl" | wc -l)
size=$(du -sh -- "$DEST" | cut -f1)
cat <<EOF
Wheelhouse ready: $DEST ($count wheels, $size; $wheel)
Copy the whole directory to the serving host, for example:
  rsync -a $DEST/ HOST:/tmp/tether-wheelhouse/
and install there, with no network needed:
  cd /tmp/tether-wheelhouse && sha256sum -c SHA256SUMS
  sudo ./install-agent.sh --wheelhouse . --url URL --env ENV --token TOKEN --pin FINGERPRINT
EOF
