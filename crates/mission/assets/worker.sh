#!/bin/sh
# Example worker for the `shell` runtime. Mission Control runs it in the ticket's workspace (a git
# worktree of the ticket's repository, or a plain folder) with MISSION_TICKET set to the ticket id
# and the ticket's text on standard input. The text is data: it is written to a file, never run.
# Exiting 0 submits the work for review; `mission run ask "…"` would ask a question instead.
set -eu
mkdir -p notes
cat > "notes/${MISSION_TICKET}.md"
mission run progress "wrote notes/${MISSION_TICKET}.md"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git add "notes/${MISSION_TICKET}.md"
    git commit -q -m "${MISSION_TICKET}: notes"
fi
