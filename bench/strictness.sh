#!/usr/bin/env bash
# lb vs nginx vs HAProxy on hostile HTTP/1.1 inputs; loopback only. See bench/README.md.
# Arguments go to strictness.py (--check, --only ID,ID, --list, --timeout S, --lb-bin PATH, --keep-tmp).
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PATH=$PATH:/usr/sbin
missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then
  echo "strictness.sh: missing: ${missing[*]}" >&2
  echo "  install with: sudo apt-get install -y ${missing[*]}" >&2
  exit 2
fi
exec python3 "$BENCH/strictness.py" "$@"
