# SPDX-License-Identifier: Apache-2.0
# Sourced by ci/test and bench/run_all: make sure the Debian packages a command
# needs are installed. As root: apt-get update + install what is missing. As a
# normal user: print the exact apt-get line and exit non-zero.
# usage: resq_need_packages <pkg>...
resq_need_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "resq: missing packages (${missing[*]}) and no apt-get on this machine; install them by hand" >&2
    exit 1
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "resq: missing Debian packages. Run as root, or install them first with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "resq: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || {
    echo "resq: apt-get install ${missing[*]} failed" >&2
    exit 1
  }
}
