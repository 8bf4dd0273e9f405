#!/bin/sh
# Example worker for the `shell` runtime. Mission Control runs it in the ticket's workspace (a git
# worktree of the ticket's repository) with MISSION_TICKET set to the ticket id and the ticket's
# text on standard input. The text is data: it is written to a file, never evaluated.
set -eu
mkdir -p notes
cat > "notes/${MISSION_TICKET}.md"
git add "notes/${MISSION_TICKET}.md"
git commit -q -m "${MISSION_TICKET}: notes"
