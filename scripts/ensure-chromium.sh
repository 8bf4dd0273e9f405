#!/usr/bin/env bash
# Makes sure a headless Chromium is on this machine for the dashboard's browser test
# (crates/mission/tests/dashboard.rs): Debian's `chromium` package, installed with apt-get
# when no Chromium is found. Prints the browser's path. Usable by hand; .ci/run calls it.
#
# Exits non-zero, saying why, when none is found and none can be installed (not root, no
# apt-get, no network). The test then fails in CI (CI=true) and is skipped with a notice
# elsewhere.
set -euo pipefail

find_chromium() {
    if [[ -n "${MISSION_CHROMIUM:-}" && -x "${MISSION_CHROMIUM}" ]]; then
        echo "${MISSION_CHROMIUM}"
        return 0
    fi
    local name
    for name in chromium chromium-browser google-chrome-stable google-chrome; do
        if command -v "$name" >/dev/null 2>&1; then
            command -v "$name"
            return 0
        fi
    done
    return 1
}

if find_chromium; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: no Chromium found and no apt-get to install one" >&2
    exit 1
fi
sudo=()
if [[ "$(id -u)" != 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
    else
        echo "ensure-chromium: no Chromium found; installing it needs root (apt-get install chromium)" >&2
        exit 1
    fi
fi

echo "ensure-chromium: installing Debian's chromium with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq >&2
"${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2

if find_chromium; then
    exit 0
fi
echo "ensure-chromium: apt-get ran, yet no chromium is on PATH" >&2
exit 1
