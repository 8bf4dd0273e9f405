#!/bin/sh
# Example worker for the `shell` runtime. Mission Control runs it in the ticket's workspace (a git
# worktree of the ticket's repository, or a plain folder) with MISSION_TICKET set to the ticket id
# and the ticket's text on standard input. The text is data: it is written to a file, never run.
# Exiting 0 submits the work for review; `mission run ask "…"` would ask a question instead.
#
# The same script answers the harness's other calls: as a reviewer (MISSION_CALL=review, run by
# the auto-review task with the ticket and its diff on standard input) and as an orchestrator
# (MISSION_CALL=inbox, run by the inbox-drain task with an inbox item).
set -eu
case "${MISSION_CALL:-}" in
review)
    # An example reviewer: it approves a diff that adds something, and rejects an empty one.
    if grep -q '^+++ '; then
        mission run review approve --reason "the diff adds the ticket's notes"
    else
        mission run review reject --reason "the diff is empty: nothing was done"
    fi
    exit 0
    ;;
inbox)
    mission inbox act "$MISSION_INBOX_ITEM" escalated --text "the example orchestrator hands this to a person"
    exit 0
    ;;
esac
mkdir -p notes
cat > "notes/${MISSION_TICKET}.md"
mission run progress "wrote notes/${MISSION_TICKET}.md"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git add "notes/${MISSION_TICKET}.md"
    git commit -q -m "${MISSION_TICKET}: notes"
fi
