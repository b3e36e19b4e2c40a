#!/usr/bin/env bash
# Makes sure Mesa's off-screen renderer (libosmesa6) is present: MuJoCo renders on the CPU through it.
set -euo pipefail
if ldconfig -p 2>/dev/null | grep -q 'libOSMesa\.so'; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing libosmesa6 (MuJoCo's CPU renderer)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libosmesa6 >/dev/null
  exit 0
fi
echo "libosmesa6 is missing: simulator rendering will fail. Install it with:" >&2
echo "    sudo apt-get install -y libosmesa6" >&2
