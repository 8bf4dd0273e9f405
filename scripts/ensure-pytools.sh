#!/usr/bin/env bash
# Makes sure the Python tools some tests drive are installed, from PyPI, in a virtual
# environment of their own (target/pytools, or MISSION_PYTOOLS): `standardwebhooks`, the
# reference verifier of Standard Webhooks signatures (tests/notify.rs checks the webhooks with
# it), and `schemathesis`, which checks the running API against its OpenAPI document. Prints the
# environment's python. Usable by hand; .ci/run calls it.
#
# Exits non-zero, saying why, when Python 3 or its venv module is missing or PyPI cannot be
# reached. The tests that need the tools then fail in CI (CI=true) and are skipped with a notice
# elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned: what the tests were written against.
requirements=(standardwebhooks==1.1.0 schemathesis==4.32.5)
venv="${MISSION_PYTOOLS:-$PWD/target/pytools}"
stamp="$venv/.requirements"

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "${requirements[*]}" ]]; then
    echo "$venv/bin/python"
    exit 0
fi

python=""
for name in python3 python; do
    if command -v "$name" >/dev/null 2>&1 && "$name" -c 'import sys; sys.exit(sys.version_info < (3, 9))'; then
        python="$(command -v "$name")"
        break
    fi
done
if [[ -z "$python" ]]; then
    echo "ensure-pytools: no Python 3.9 or newer found" >&2
    exit 1
fi
if ! "$python" -m venv --help >/dev/null 2>&1; then
    echo "ensure-pytools: $python has no venv module (Debian: apt-get install python3-venv)" >&2
    exit 1
fi

echo "ensure-pytools: installing ${requirements[*]} into $venv" >&2
rm -rf "$venv"
"$python" -m venv "$venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${requirements[@]}" >&2
echo "${requirements[*]}" >"$stamp"
echo "$venv/bin/python"
