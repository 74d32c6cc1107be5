#!/usr/bin/env bash
# Check stubs/durableflow-stubs against the SDK's implementation with mypy.stubtest.
#
# mypy.ini puts tests/typing/stubpath first on mypy's search path; its "durableflow" is a
# symlink to stubs/durableflow-stubs, so stubtest compares the stubs (not the sources)
# with the imported runtime package. Exits non-zero when stubtest reports anything,
# including an allowlist entry that no longer matches.
#
# Usage: tests/typing/run_stubtest.sh [extra stubtest options]
# Uses $PYTHON if set, else the repository's .venv, else python3.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
if [[ -n "${PYTHON:-}" ]]; then
    python="$PYTHON"
elif [[ -x "$root/.venv/bin/python" ]]; then
    python="$root/.venv/bin/python"
else
    python="python3"
fi

cd "$root"
exec "$python" -m mypy.stubtest durableflow \
    --mypy-config-file "$here/mypy.ini" \
    --allowlist "$here/stubtest_allowlist.txt" \
    "$@"
