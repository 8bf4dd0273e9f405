"""Verifies webhook deliveries with `standardwebhooks`, the reference implementation of the
Standard Webhooks specification (installed by scripts/ensure-pytools.sh).

Reads {"secret": "whsec_...", "requests": [{"headers": {...}, "body": "..."}]} on standard input;
prints one JSON list: for each request, "ok" or the verifier's error.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook

given = json.load(sys.stdin)
hook = Webhook(given["secret"])
results = []
for request in given["requests"]:
    try:
        hook.verify(request["body"], request["headers"])
        results.append("ok")
    except Exception as error:  # the verifier's own errors, whatever their class
        results.append(f"{type(error).__name__}: {error}")
print(json.dumps(results))
