#!/usr/bin/env bash
# Install the Tether agent on a serving host: a venv, a system user, its config, a hardened
# systemd unit, and its enrollment. Run it again to change a setting: what is already right is
# left untouched (and reported "unchanged"). `--help` lists every flag.
set -euo pipefail

readonly PROG=install-agent.sh
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR

# Paths on the target system; with --root they are all under ROOT.
readonly VENV=/opt/tether/venv
readonly CONFIG=/etc/tether/agent.toml
readonly UNIT_NAME=tether-agent.service
readonly UNIT=/etc/systemd/system/$UNIT_NAME
readonly WANTS=/etc/systemd/system/multi-user.target.wants/$UNIT_NAME
readonly SYSUSERS=/etc/sysusers.d/tether.conf
readonly TMPFILES=/etc/tmpfiles.d/tether.conf
readonly STAMP_NAME=tether-install.stamp
readonly USER_NAME=tether
readonly TEMPLATE_DATA_DIR=/var/lib/tether
readonly PYTHON_OK='import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))'

usage() {
  cat <<'EOF'
Usage: install-agent.sh [OPTIONS]
       install-agent.sh --uninstall [--purge] [--root DIR] [--data-dir DIR]

Install the Tether agent: Tether into /opt/tether/venv, a `tether` system user, the settings in
/etc/tether/agent.toml (mode 0640, root:tether), the systemd unit tether-agent.service (enabled),
and enroll the agent with the control plane. Running it again changes only what differs.

Enrollment (all needed unless --no-enroll):
  --url URL             Control plane URL (http:// or https://); also written to agent.toml.
  --env ENV             Environment the enrollment token is for.
  --token TOKEN         Enrollment token [$TETHER_ENROLLMENT_TOKEN]; the environment variable
                        keeps it out of the process list.
  --pin FINGERPRINT     Pin the control plane's signing key (SHA256:...), from
                        `tether key show` on the control plane.
  --no-enroll           Install without enrolling (for images; enroll on first boot).

Agent settings (written to agent.toml):
  --data-dir DIR        Identity, state and artifact cache [/var/lib/tether]; the unit may
                        write there only.
  --serve HOST:PORT     Local inference server address [127.0.0.1:8501].
  --label KEY=VALUE     A label reported with every heartbeat; repeatable.

Where Tether comes from (default: the source tree this script is in; needs a package index):
  --wheel FILE          A built Tether wheel (dependencies from the package index, or from
                        --wheelhouse).
  --wheelhouse DIR      An offline wheelhouse made by scripts/build-wheelhouse.sh: installs with
                        `pip install --no-index --find-links DIR`, no network used.
  --python PATH         Python 3.11+ to build the venv with [python3.11, else python3].
  --pip-args ARGS       Extra arguments for `pip install`, as one string (e.g. "--no-deps").

Other:
  --root DIR            Install into a staging root (tests, image builds): every path is
                        under DIR; no user is created and no systemctl runs on this system:
                        the user is declared in /etc/sysusers.d/tether.conf, ownership in
                        /etc/tmpfiles.d/tether.conf, and the unit is enabled by its
                        multi-user.target.wants symlink, as `systemctl --root` would. The
                        image needs the same Python at the same path as --python.
  --uninstall           Stop and remove the unit, the venv and the config; keep the data dir
                        (identity, cache) and the user.
  --purge               With --uninstall: also remove the data dir and the `tether` user.
  -h, --help            Show this help.

Example:
  sudo scripts/install-agent.sh --url https://tether.example.com --env production \
      --token "$TOKEN" --pin SHA256:... --label zone=eu-west-1a
EOF
}

# --- messages ------------------------------------------------------------------------------

usage_error() {
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  printf 'Run %s --help for the flags.\n' "$PROG" >&2
  exit 2
}

fail() {
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  exit 1
}

CHANGES=0
# Report one item: `report changed|unchanged|skipped|kept WHAT DETAIL`; count the changes.
report() {
  local status=$1
  shift
  [[ $status == changed ]] && CHANGES=$((CHANGES + 1))
  printf '%-9s  %s\n' "$status" "$*"
}

# --- flags ---------------------------------------------------------------------------------

URL=""
ENVIRONMENT=""
TOKEN=${TETHER_ENROLLMENT_TOKEN:-}
PIN=""
ENROLL=1
DATA_DIR=""
SERVE=""
LABELS=()
WHEEL=""
WHEELHOUSE=""
PYTHON=""
PIP_ARGS=()
ROOT=""
UNINSTALL=0
PURGE=0

# Set VALUE to the value of flag $1 (from --flag=VALUE or the next argument) and SHIFT to the
# number of extra arguments it used.
INLINE=""
HAS_INLINE=0
take_value() {
  local flag=$1
  shift
  if ((HAS_INLINE)); then
    VALUE=$INLINE
    SHIFT=0
  elif (($# == 0)) || [[ $flag != --pip-args && $1 == --* ]]; then
    usage_error "$flag needs a value"
  else
    VALUE=$1
    SHIFT=1
  fi
  [[ -n $VALUE ]] || usage_error "$flag needs a non-empty value"
}

no_value() {
  ((HAS_INLINE == 0)) || usage_error "$1 takes no value"
}

while (($#)); do
  arg=$1
  shift
  HAS_INLINE=0
  if [[ $arg == --*=* ]]; then
    INLINE=${arg#*=}
    arg=${arg%%=*}
    HAS_INLINE=1
  fi
  case $arg in
    --url) take_value "$arg" "$@"; URL=$VALUE ;;
    --env) take_value "$arg" "$@"; ENVIRONMENT=$VALUE ;;
    --token) take_value "$arg" "$@"; TOKEN=$VALUE ;;
    --pin) take_value "$arg" "$@"; PIN=$VALUE ;;
    --no-enroll) no_value "$arg"; ENROLL=0; SHIFT=0 ;;
    --data-dir) take_value "$arg" "$@"; DATA_DIR=$VALUE ;;
    --serve) take_value "$arg" "$@"; SERVE=$VALUE ;;
    --label) take_value "$arg" "$@"; LABELS+=("$VALUE") ;;
    --wheel) take_value "$arg" "$@"; WHEEL=$VALUE ;;
    --wheelhouse) take_value "$arg" "$@"; WHEELHOUSE=$VALUE ;;
    --python) take_value "$arg" "$@"; PYTHON=$VALUE ;;
    --pip-args)
      take_value "$arg" "$@"
      read -r -a extra <<<"$VALUE"
      PIP_ARGS+=("${extra[@]}")
      ;;
    --root) take_value "$arg" "$@"; ROOT=$VALUE ;;
    --uninstall) no_value "$arg"; UNINSTALL=1; SHIFT=0 ;;
    --purge) no_value "$arg"; PURGE=1; SHIFT=0 ;;
    -h | --help) usage; exit 0 ;;
    -*) usage_error "unknown flag $arg" ;;
    *) usage_error "unexpected argument '$arg' (every setting is a --flag)" ;;
  esac
  shift "$SHIFT"
done

# --- checks, before anything is changed ----------------------------------------------------

((PURGE == 0 || UNINSTALL == 1)) || usage_error "--purge only goes with --uninstall"

if [[ -n $ROOT ]]; then
  ROOT=$(realpath -m -- "$ROOT")
  [[ $ROOT != / ]] || usage_error "--root / is this system: leave --root out instead"
elif ((EUID != 0)); then
  fail "installing on this system needs root (sudo $PROG ...); --root DIR stages into DIR"
fi

check_absolute_path() {
  local flag=$1 path=$2
  [[ $path == /* ]] || usage_error "$flag $path is not an absolute path"
  [[ $path =~ ^/[A-Za-z0-9._/-]+$ ]] ||
    usage_error "$flag $path: use letters, digits and . _ - / only (it goes into the unit file)"
  [[ ! $path =~ (^|/)\.\.?(/|$) && $path != *//* ]] ||
    usage_error "$flag $path must not contain '.', '..' or '//' components"
}

# Where agent.toml says the data lives, for --uninstall without --data-dir.
configured_data_dir() {
  [[ -f $ROOT$CONFIG ]] || return 0
  sed -n 's/^data_dir = "\(.*\)"$/\1/p' "$ROOT$CONFIG" | head -n 1
}

if [[ -n $DATA_DIR ]]; then
  DATA_DIR=${DATA_DIR%/}
  check_absolute_path --data-dir "$DATA_DIR"
  [[ -n $DATA_DIR && $DATA_DIR != / ]] || usage_error "--data-dir must not be /"
elif ((UNINSTALL)); then
  DATA_DIR=$(configured_data_dir)
  DATA_DIR=${DATA_DIR:-$TEMPLATE_DATA_DIR}
else
  DATA_DIR=$TEMPLATE_DATA_DIR
fi

# Escape a TOML basic string; refuse control characters rather than guess.
toml_string() {
  local flag=$1 text=$2
  [[ ! $text =~ [[:cntrl:]] ]] || usage_error "$flag: control characters are not allowed"
  text=${text//\\/\\\\}
  text=${text//\"/\\\"}
  printf '"%s"' "$text"
}

if ((UNINSTALL == 0)); then
  if [[ -n $URL ]]; then
    [[ $URL =~ ^https?://[^[:space:]/]+ ]] ||
      usage_error "--url $URL is not an http:// or https:// URL"
    URL=${URL%/}
  fi
  if [[ -n $ENVIRONMENT && ! $ENVIRONMENT =~ ^[a-z0-9][a-z0-9._-]{0,63}$ ]]; then
    usage_error "--env $ENVIRONMENT is not an environment name (lower-case letters, digits, . _ -)"
  fi
  if [[ -n $SERVE ]]; then
    if [[ ! $SERVE =~ ^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})$ ]] ||
      ((BASH_REMATCH[2] > 65535)); then
      usage_error "--serve $SERVE is not HOST:PORT (e.g. 127.0.0.1:8501)"
    fi
  fi
  seen=" "
  for label in "${LABELS[@]}"; do
    [[ $label == *=* && -n ${label%%=*} ]] || usage_error "--label $label is not KEY=VALUE"
    toml_string --label "$label" >/dev/null
    [[ $seen != *" ${label%%=*}= "* ]] || usage_error "--label ${label%%=*} is given twice"
    seen+="${label%%=*}= "
  done
  [[ -z $PIN || ! $PIN =~ [[:space:]] ]] || usage_error "--pin must not contain spaces"
  [[ -z $TOKEN || ! $TOKEN =~ [[:space:]] ]] || usage_error "--token must not contain spaces"
  if ((ENROLL)); then
    missing=()
    [[ -n $URL ]] || missing+=(--url)
    [[ -n $ENVIRONMENT ]] || missing+=(--env)
    [[ -n $TOKEN ]] || missing+=("--token (or \$TETHER_ENROLLMENT_TOKEN)")
    if ((${#missing[@]})); then
      usage_error "enrolling needs ${missing[*]}; pass --no-enroll to install without enrolling"
    fi
  fi

  if [[ -n $WHEELHOUSE ]]; then
    [[ -d $WHEELHOUSE ]] || usage_error "--wheelhouse $WHEELHOUSE is not a directory"
    WHEELHOUSE=$(cd -- "$WHEELHOUSE" && pwd -P)
    if [[ -z $WHEEL ]] && ! compgen -G "$WHEELHOUSE/tether-*.whl" >/dev/null; then
      usage_error "--wheelhouse $WHEELHOUSE holds no tether-*.whl (build it with scripts/build-wheelhouse.sh)"
    fi
  fi
  if [[ -n $WHEEL ]]; then
    [[ -f $WHEEL && $WHEEL == *.whl ]] || usage_error "--wheel $WHEEL is not a .whl file"
    WHEEL=$(cd -- "$(dirname -- "$WHEEL")" && pwd -P)/$(basename -- "$WHEEL")
  fi
  SOURCE_DIR=$(dirname -- "$SCRIPT_DIR")
  if [[ -z $WHEEL && -z $WHEELHOUSE && ! -f $SOURCE_DIR/pyproject.toml ]]; then
    if compgen -G "$SCRIPT_DIR/tether-*.whl" >/dev/null; then
      usage_error "this script sits in a wheelhouse: pass --wheelhouse $SCRIPT_DIR"
    fi
    usage_error "no Tether source tree around $SCRIPT_DIR: pass --wheel FILE or --wheelhouse DIR"
  fi

  if [[ -z $PYTHON ]]; then
    # The system's Python first: the service user must be able to run it (a pyenv under
    # /root, say, it cannot).
    for candidate in /usr/bin/python3.11 /usr/bin/python3 /usr/local/bin/python3.11 \
      "$(command -v python3.11 || true)" "$(command -v python3 || true)"; do
      if [[ -n $candidate && -x $candidate ]] && "$candidate" -c "$PYTHON_OK" 2>/dev/null; then
        PYTHON=$candidate
        break
      fi
    done
    [[ -n $PYTHON ]] ||
      fail "no Python 3.11 or newer with its venv module found: pass --python PATH (Debian: apt-get install python3-venv)"
  fi
  command -v -- "$PYTHON" >/dev/null || usage_error "--python $PYTHON is not an executable"
  PYTHON=$(command -v -- "$PYTHON")
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
    usage_error "--python $PYTHON is not Python 3.11 or newer"
  "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null ||
    fail "$PYTHON cannot make a venv: install its venv module (Debian: apt-get install python3-venv)"

  UNIT_TEMPLATE=""
  for candidate in "$SOURCE_DIR/config/$UNIT_NAME" "$SCRIPT_DIR/$UNIT_NAME" \
    ${WHEELHOUSE:+"$WHEELHOUSE/$UNIT_NAME"}; do
    if [[ -f $candidate ]]; then
      UNIT_TEMPLATE=$candidate
      break
    fi
  done
  [[ -n $UNIT_TEMPLATE ]] ||
    fail "cannot find $UNIT_NAME (in config/ of the source tree, beside this script, or in the wheelhouse)"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tether-install.XXXXXX")
trap 'rm -rf -- "$WORK"' EXIT
# The venv must be readable by the tether user whatever root's umask is.
umask 022

[[ -z $ROOT || $UNINSTALL == 1 ]] || mkdir -p -- "$ROOT" || fail "cannot create --root $ROOT"

# --- helpers -------------------------------------------------------------------------------

owner_of() { stat -c '%U:%G' -- "$1"; }
# Who should own a file: nobody in particular under --root (tmpfiles.d sets it at boot).
owner() { [[ -n $ROOT ]] || printf '%s' "$1"; }
mode_of() { stat -c '%a' -- "$1"; }

# Put CONTENT_FILE at DEST (under ROOT) with MODE and OWNER (user:group, or "" with --root),
# unless it is there already: an unchanged file keeps its mtime, and so does its directory.
install_file() {
  local content=$1 dest=$2 mode=$3 owner=$4 what=$5
  local target=$ROOT$dest
  if [[ -f $target && ! -L $target ]] && cmp -s -- "$content" "$target"; then
    local fixed=()
    if [[ $(mode_of "$target") != "${mode#0}" ]]; then
      chmod "$mode" -- "$target"
      fixed+=("mode $mode")
    fi
    if [[ -n $owner && $(owner_of "$target") != "$owner" ]]; then
      chown "$owner" -- "$target"
      fixed+=("owner $owner")
    fi
    if ((${#fixed[@]})); then
      report changed "$dest ($what): set ${fixed[*]}"
    else
      report unchanged "$dest ($what)"
    fi
    return
  fi
  mkdir -p -- "$(dirname -- "$target")"
  local temporary
  temporary=$(mktemp "$(dirname -- "$target")/.$(basename -- "$target").XXXXXX")
  cat -- "$content" >"$temporary"
  chmod "$mode" -- "$temporary"
  [[ -z $owner ]] || chown "$owner" -- "$temporary"
  mv -f -- "$temporary" "$target"
  report changed "$dest ($what)"
}

remove_path() {
  local path=$1 what=$2
  if [[ -e $ROOT$path || -L $ROOT$path ]]; then
    rm -rf -- "$ROOT$path"
    report changed "$path ($what): removed"
  else
    report unchanged "$path ($what): not there"
  fi
}

remove_dir_if_empty() {
  if [[ -d $ROOT$1 ]] && rmdir -- "$ROOT$1" 2>/dev/null; then
    report changed "$1: removed (empty)"
  fi
}

systemd_running() { [[ -z $ROOT && -d /run/systemd/system ]] && command -v systemctl >/dev/null; }

# The tether command of the venv. Under --root the scripts' #! lines name the final
# /opt/tether/venv path (so the tree works once copied into an image): call them through the
# venv's Python, which finds its packages from where it really is.
tether_cmd() {
  if [[ -n $ROOT ]]; then
    TETHER=("$ROOT$VENV/bin/python" "$ROOT$VENV/bin/tether")
  else
    TETHER=("$VENV/bin/tether")
  fi
}

# Set AS_USER to the command prefix that runs a command as the tether user, keeping the
# environment (the enrollment token travels in it).
as_agent_user() {
  if command -v runuser >/dev/null; then
    AS_USER=(runuser -u "$USER_NAME" --)
  elif command -v sudo >/dev/null; then
    AS_USER=(sudo --preserve-env=TETHER_ENROLLMENT_TOKEN -u "$USER_NAME" --)
  else
    fail "neither runuser nor sudo is here to run commands as the $USER_NAME user"
  fi
}

# --- uninstall -----------------------------------------------------------------------------

uninstall() {
  if systemd_running && [[ -f $UNIT ]]; then
    systemctl disable --now "$UNIT_NAME" >/dev/null 2>&1 || true
    report changed "$UNIT_NAME: stopped and disabled"
  fi
  remove_path "$WANTS" "enablement"
  remove_path "$UNIT" "systemd unit"
  if systemd_running; then
    systemctl daemon-reload
  fi
  remove_path "$VENV" "venv"
  remove_dir_if_empty /opt/tether
  remove_path "$CONFIG" "agent settings"
  remove_dir_if_empty /etc/tether
  remove_path "$TMPFILES" "data dir ownership"
  if ((PURGE)); then
    check_absolute_path "data dir" "$DATA_DIR"
    remove_path "$DATA_DIR" "data: identity, state, cache"
    remove_path "$SYSUSERS" "system user"
    if [[ -n $ROOT ]]; then
      report skipped "user $USER_NAME: --root given, nothing to delete on this system"
    elif getent passwd "$USER_NAME" >/dev/null; then
      userdel "$USER_NAME"
      report changed "user $USER_NAME: deleted"
    else
      report unchanged "user $USER_NAME: not there"
    fi
  else
    if [[ -d $ROOT$DATA_DIR ]]; then
      report kept "$DATA_DIR (data: identity, state, cache; --purge removes it)"
    fi
    report kept "$SYSUSERS and user $USER_NAME (--purge removes them)"
  fi
}

# --- install -------------------------------------------------------------------------------

nologin_shell() {
  local shell
  for shell in /usr/sbin/nologin /sbin/nologin /bin/false; do
    if [[ -x $ROOT$shell || ( -n $ROOT && $shell == /usr/sbin/nologin ) ]]; then
      printf '%s' "$shell"
      return
    fi
  done
  printf '/bin/false'
}

install_user() {
  local shell
  shell=$(nologin_shell)
  printf 'u %s - "Tether agent" %s %s\n' "$USER_NAME" "$DATA_DIR" "$shell" >"$WORK/sysusers"
  install_file "$WORK/sysusers" "$SYSUSERS" 0644 "$(owner root:root)" "system user"
  if [[ -n $ROOT ]]; then
    report skipped "user $USER_NAME: --root given; $SYSUSERS creates it at boot (systemd-sysusers)"
    return
  fi
  if getent passwd "$USER_NAME" >/dev/null; then
    report unchanged "user $USER_NAME (exists)"
    return
  fi
  local group=(--user-group)
  if getent group "$USER_NAME" >/dev/null; then
    group=(--gid "$USER_NAME")
  fi
  useradd --system "${group[@]}" --home-dir "$DATA_DIR" --no-create-home \
    --shell "$shell" --comment "Tether agent" "$USER_NAME"
  report changed "user $USER_NAME: created (system user, no login shell, home $DATA_DIR)"
}

install_data_dir() {
  local target=$ROOT$DATA_DIR owner=""
  [[ -n $ROOT ]] || owner=$USER_NAME:$USER_NAME
  local fixed=()
  if [[ ! -d $target ]]; then
    mkdir -p -- "$target"
    fixed+=(created)
  fi
  if [[ $(mode_of "$target") != 750 ]]; then
    chmod 0750 -- "$target"
    fixed+=("mode 0750")
  fi
  if [[ -n $owner && $(owner_of "$target") != "$owner" ]]; then
    chown "$owner" -- "$target"
    fixed+=("owner $owner")
  fi
  if ((${#fixed[@]})); then
    report changed "$DATA_DIR (data dir): ${fixed[*]}"
  else
    report unchanged "$DATA_DIR (data dir)"
  fi
  # With --root the files are root's until boot; tmpfiles hands them to the tether user.
  {
    printf 'd %s 0750 %s %s -\n' "$DATA_DIR" "$USER_NAME" "$USER_NAME"
    printf 'Z %s - %s %s -\n' "$DATA_DIR" "$USER_NAME" "$USER_NAME"
    printf 'z %s 0640 root %s -\n' "$CONFIG" "$USER_NAME"
  } >"$WORK/tmpfiles"
  install_file "$WORK/tmpfiles" "$TMPFILES" 0644 "$(owner root:root)" \
    "data dir ownership"
}

# Print what identifies the Tether being installed: a change means the venv must be redone.
source_digest() {
  "$PYTHON" - "$@" <<'PY'
import hashlib, pathlib, sys, zipfile

def wheel_digest(path):
    # Hash names and bytes, not the zip file: a rebuilt wheel differs only in timestamps.
    digest = hashlib.sha256()
    with zipfile.ZipFile(path) as wheel:
        for name in sorted(wheel.namelist()):
            digest.update(name.encode() + b"\0" + hashlib.sha256(wheel.read(name)).digest())
    return digest.hexdigest()

kind, path = sys.argv[1], pathlib.Path(sys.argv[2])
if kind == "wheelhouse":
    digest = hashlib.sha256()
    for wheel in sorted(path.glob("*.whl")):
        digest.update(wheel.name.encode() + b"\0" + hashlib.sha256(wheel.read_bytes()).digest())
    print(digest.hexdigest())
else:
    print(wheel_digest(path))
PY
}

# Build a wheel of the source tree from a clean copy: setuptools' build/ dir in a tree can hold
# stale modules that would end up in the wheel.
build_source_wheel() {
  local copy=$WORK/source
  mkdir -p -- "$copy" "$WORK/wheel"
  tar -C "$SOURCE_DIR" -cf - --exclude=.git --exclude='.venv*' --exclude=build --exclude=dist \
    --exclude='*.egg-info' --exclude=__pycache__ --exclude='.*_cache' --exclude=.hypothesis \
    --exclude=tether-data --exclude=tether-agent --exclude=node_modules . | tar -C "$copy" -xf -
  "$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$WORK/wheel" "$copy" ||
    fail "cannot build a wheel of $SOURCE_DIR (needs the package index for setuptools; offline, use --wheelhouse)"
  WHEEL=$(compgen -G "$WORK/wheel/tether-*.whl" | head -n 1)
}

install_venv() {
  local venv=$ROOT$VENV source_kind source_path
  if [[ -n $WHEELHOUSE && -z $WHEEL ]]; then
    source_kind=wheelhouse
    source_path=$WHEELHOUSE
  else
    [[ -n $WHEEL ]] || build_source_wheel
    source_kind=wheel
    source_path=$WHEEL
  fi
  local python_version
  python_version=$("$PYTHON" -c 'import platform, sys; print(platform.python_version(), sys._base_executable)')
  {
    printf 'python %s\n' "$python_version"
    printf 'source %s %s\n' "$source_kind" "$(source_digest "$source_kind" "$source_path")"
    if [[ -n $WHEELHOUSE && $source_kind == wheel ]]; then
      printf 'wheelhouse %s\n' "$(source_digest wheelhouse "$WHEELHOUSE")"
    fi
    printf 'pip-args %s\n' "${PIP_ARGS[*]:-}"
  } >"$WORK/stamp"
  if [[ -x $venv/bin/python && -f $venv/$STAMP_NAME ]] && cmp -s "$WORK/stamp" "$venv/$STAMP_NAME"; then
    report unchanged "$VENV (venv: same Python, same Tether build, same pip args)"
    return
  fi

  local upgrading=0
  if [[ -x $venv/bin/python ]]; then
    local venv_version
    venv_version=$("$venv/bin/python" -c 'import platform; print(platform.python_version())' 2>/dev/null || true)
    if [[ $venv_version != "${python_version%% *}" ]]; then
      rm -rf -- "$venv"
    elif "$venv/bin/python" -m pip show --quiet tether >/dev/null 2>&1; then
      upgrading=1
    fi
  fi
  echo "Installing Tether into $VENV with pip (a minute or so)..."
  rm -f -- "$venv/$STAMP_NAME"
  [[ -x $venv/bin/python ]] || "$PYTHON" -m venv "$venv"

  local pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input)
  local target=()
  if [[ -n $WHEELHOUSE ]]; then
    # Offline: no index, no pip.conf (its index or find-links would reach the network).
    export PIP_CONFIG_FILE=/dev/null
    unset PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_CONSTRAINT
    pip+=(--no-index --find-links "$WHEELHOUSE")
  fi
  if [[ $source_kind == wheelhouse ]]; then
    target=(tether)
  else
    target=("$WHEEL")
  fi
  "${pip[@]}" ${PIP_ARGS[@]+"${PIP_ARGS[@]}"} "${target[@]}" ||
    fail "pip could not install Tether into $venv (see pip's message above)"
  if ((upgrading)); then
    # Same version number, new build: pip would otherwise keep the installed one.
    "${pip[@]}" ${PIP_ARGS[@]+"${PIP_ARGS[@]}"} --force-reinstall --no-deps "${target[@]}" ||
      fail "pip could not reinstall Tether into $venv"
  fi
  if [[ -n $ROOT ]]; then
    relocate_venv
  fi
  tether_cmd
  local version
  version=$("${TETHER[@]}" --version 2>&1) || fail "the installed tether does not run: $version"
  if [[ -z $ROOT ]]; then
    as_agent_user
    "${AS_USER[@]}" "${TETHER[@]}" --version >/dev/null 2>&1 ||
      fail "the $USER_NAME user cannot run $VENV/bin/tether: is $PYTHON (and every folder above it) readable by all? Pass --python with a system Python, e.g. /usr/bin/python3.11"
  fi
  cp -- "$WORK/stamp" "$venv/$STAMP_NAME"
  report changed "$VENV (venv: $version from $source_kind $(basename -- "$source_path"))"
}

# Under --root, make the venv's scripts name /opt/tether/venv rather than ROOT/opt/tether/venv.
relocate_venv() {
  "$PYTHON" - "$ROOT$VENV" "$VENV" <<'PY'
import pathlib, sys

staged, final = sys.argv[1].encode(), sys.argv[2].encode()
venv = pathlib.Path(sys.argv[1])
for path in [*venv.joinpath("bin").iterdir(), venv / "pyvenv.cfg"]:
    if path.is_symlink() or not path.is_file():
        continue
    data = path.read_bytes()
    if staged in data and b"\0" not in data[:1024]:
        mode = path.stat().st_mode
        path.write_bytes(data.replace(staged, final))
        path.chmod(mode)
PY
}

install_config() {
  {
    printf '# Tether agent settings, written by install-agent.sh: run it again to change them.\n'
    printf '# docs/agent.md explains every setting; those not set here keep their defaults.\n'
    if [[ -n $URL ]]; then
      printf 'url = %s\n' "$(toml_string --url "$URL")"
    else
      printf '# url: the control plane the agent enrolled with.\n'
    fi
    printf 'data_dir = %s\n' "$(toml_string --data-dir "$DATA_DIR")"
    printf 'serve = %s\n' "$(toml_string --serve "${SERVE:-127.0.0.1:8501}")"
    if ((${#LABELS[@]})); then
      printf '\n[labels]\n'
      local label key
      for label in "${LABELS[@]}"; do
        key=${label%%=*}
        if [[ ! $key =~ ^[A-Za-z0-9_-]+$ ]]; then
          key=$(toml_string --label "$key")
        fi
        printf '%s = %s\n' "$key" "$(toml_string --label "${label#*=}")"
      done
    fi
  } >"$WORK/agent.toml"
  install_file "$WORK/agent.toml" "$CONFIG" 0640 "$(owner "root:$USER_NAME")" \
    "agent settings"
}

install_unit() {
  local line
  while IFS= read -r line || [[ -n $line ]]; do
    case $line in
      ReadWritePaths=*) line="ReadWritePaths=$DATA_DIR" ;;
      ConditionPathExists=*) line="ConditionPathExists=$DATA_DIR/identity.json" ;;
      WorkingDirectory=*) line="WorkingDirectory=$DATA_DIR" ;;
    esac
    printf '%s\n' "$line"
  done <"$UNIT_TEMPLATE" >"$WORK/unit"
  local before=$CHANGES
  install_file "$WORK/unit" "$UNIT" 0644 "$(owner root:root)" "systemd unit"
  UNIT_CHANGED=$((CHANGES - before))
  # What `systemctl enable` does for WantedBy=multi-user.target, also with --root.
  if [[ -L $ROOT$WANTS && $(readlink -- "$ROOT$WANTS") == "$UNIT" ]]; then
    report unchanged "$WANTS (enabled)"
  else
    mkdir -p -- "$(dirname -- "$ROOT$WANTS")"
    ln -sfn -- "$UNIT" "$ROOT$WANTS"
    report changed "$WANTS (enabled)"
  fi
  if systemd_running && ((UNIT_CHANGED)); then
    systemctl daemon-reload
  fi
}

# Fail early (before changing anything) if this data dir is enrolled elsewhere.
check_identity() {
  local identity=$ROOT$DATA_DIR/identity.json
  ENROLLED=""
  [[ -f $identity ]] || return 0
  ENROLLED=$("$PYTHON" - "$identity" <<'PY'
import json, sys
identity = json.load(open(sys.argv[1]))
print(identity.get("agent_id", "?"), identity.get("environment", "?"), identity.get("url", "?"))
PY
  ) || fail "$DATA_DIR/identity.json is unreadable: move it aside to enroll again"
  local agent_id environment url
  read -r agent_id environment url <<<"$ENROLLED"
  if ((ENROLL)) && [[ $environment != "$ENVIRONMENT" || ${url%/} != "$URL" ]]; then
    fail "$DATA_DIR is enrolled as $agent_id in $environment at $url, not $ENVIRONMENT at $URL; enroll again with: tether agent enroll --force --data-dir $DATA_DIR ..."
  fi
}

enroll() {
  if ((ENROLL == 0)); then
    if [[ -n $ENROLLED ]]; then
      report unchanged "enrollment (enrolled as ${ENROLLED%% *})"
    else
      report skipped "enrollment (--no-enroll): later, as the $USER_NAME user: $VENV/bin/tether agent enroll --url URL --env ENV --token TOKEN --data-dir $DATA_DIR"
    fi
    return
  fi
  if [[ -n $ENROLLED ]]; then
    report unchanged "enrollment (${ENROLLED%% *} in $ENVIRONMENT)"
    return
  fi
  tether_cmd
  local command=("${TETHER[@]}" agent enroll --url "$URL" --env "$ENVIRONMENT"
    --data-dir "$ROOT$DATA_DIR" --json)
  if [[ -n $PIN ]]; then
    "${TETHER[@]}" agent enroll --help | grep -q -- '--pin' ||
      fail "this Tether's \`agent enroll\` has no --pin: install a newer Tether, or leave --pin out"
    command+=(--pin "$PIN")
  fi
  local label
  for label in "${LABELS[@]}"; do
    command+=(--label "$label")
  done
  if [[ -z $ROOT ]]; then
    as_agent_user
    command=("${AS_USER[@]}" "${command[@]}")
  fi
  local answer
  # The token goes through the environment: an argument would show in the process list.
  answer=$(cd / && TETHER_ENROLLMENT_TOKEN=$TOKEN "${command[@]}") ||
    fail "enrollment failed (see the message above); nothing else needs undoing: run this again"
  report changed "enrollment: $(printf '%s' "$answer" | "$PYTHON" -c 'import json, sys; a = json.load(sys.stdin); print(a["agent_id"], "in", a["environment"])')"
}

start_service() {
  if [[ -n $ROOT ]]; then
    report skipped "$UNIT_NAME start (--root given: it starts when the image boots)"
  elif ! systemd_running; then
    report skipped "$UNIT_NAME start (systemd is not running here: start it with systemctl start $UNIT_NAME)"
  elif [[ ! -f $DATA_DIR/identity.json ]]; then
    report skipped "$UNIT_NAME start (not enrolled yet: it starts once enrolled and restarted)"
  elif ((CHANGES > 0)); then
    systemctl restart "$UNIT_NAME"
    report changed "$UNIT_NAME (restarted)"
  elif ! systemctl is-active --quiet "$UNIT_NAME"; then
    systemctl start "$UNIT_NAME"
    report changed "$UNIT_NAME (started)"
  else
    report unchanged "$UNIT_NAME (running)"
  fi
}

if ((UNINSTALL)); then
  uninstall
else
  check_identity
  install_user
  install_data_dir
  install_venv
  install_config
  install_unit
  enroll
  start_service
fi

if ((CHANGES == 0)); then
  echo "Nothing changed."
else
  echo "$CHANGES change(s)${ROOT:+ under $ROOT}."
fi
