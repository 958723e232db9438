#!/usr/bin/env bash
# What the tests need beyond Python packages: a real redis-server (the shared-state tests start
# their own, on a free port). Installs Debian's package when it is missing; quiet when all is there.
set -euo pipefail
command -v redis-server >/dev/null 2>&1 && exit 0
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "setup-test-deps: redis-server is missing and this user cannot install it;" \
    "install Debian's redis-server package (the Redis tests skip until then, and fail in CI)" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-test-deps: no apt-get here: install redis-server (7.0 or newer) yourself" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq >/dev/null
"${sudo[@]}" apt-get install -y -qq --no-install-recommends redis-server >/dev/null
command -v redis-server >/dev/null
