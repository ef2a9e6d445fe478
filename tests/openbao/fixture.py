"""hvac as the fixture writer: reads a JSON list of calls on stdin,
[{"call": "secrets.kv.v2.create_or_update_secret", "args": {...},
"namespace": "team1"}], makes each against the OpenBao server named by
argv[1] with the token argv[2] (hvac's own methods, by their dotted path
on the client) and prints the replies as a JSON list. Any error exits
non-zero with hvac's message."""
import json
import sys

import hvac


def main() -> None:
    address, token = sys.argv[1], sys.argv[2]
    replies = []
    for call in json.load(sys.stdin):
        client = hvac.Client(url=address, token=token, namespace=call.get("namespace"))
        target = client
        for part in call["call"].split("."):
            target = getattr(target, part)
        reply = target(**call.get("args", {}))
        if hasattr(reply, "json"):
            reply = reply.json() if reply.content else None
        replies.append(reply)
    json.dump(replies, sys.stdout, default=str)


if __name__ == "__main__":
    main()
