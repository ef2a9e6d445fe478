"""boto3 as the fixture writer: reads a JSON list of calls on stdin,
[{"service": "secretsmanager", "region": "us-east-1", "op": "create_secret",
"args": {...}}], makes each against the moto server named by argv[1] and
prints the replies as a JSON list. With a second argument, calls that path
of moto's own API (its request recorder) instead and prints the reply. "SecretBinaryBase64" in args is sent as
SecretBinary bytes. Any error exits non-zero with boto3's message."""
import base64
import json
import sys
import urllib.request

import boto3


def moto_api(endpoint: str, path: str) -> bytes:
    method = "GET" if path.startswith("recorder/download") else "POST"
    request = urllib.request.Request(f"{endpoint}/moto-api/{path}", method=method)
    with urllib.request.urlopen(request, timeout=10) as reply:
        return reply.read()


def main() -> None:
    endpoint = sys.argv[1]
    if len(sys.argv) > 2:
        # moto's own API: recorder/start-recording, recorder/download-recording.
        sys.stdout.buffer.write(moto_api(endpoint, sys.argv[2]))
        return
    replies = []
    for call in json.load(sys.stdin):
        client = boto3.client(
            call["service"],
            region_name=call.get("region", "us-east-1"),
            endpoint_url=endpoint,
            aws_access_key_id=call.get("key", "testing"),
            aws_secret_access_key=call.get("secret", "testing"),
        )
        args = dict(call.get("args", {}))
        if "SecretBinaryBase64" in args:
            args["SecretBinary"] = base64.b64decode(args.pop("SecretBinaryBase64"))
        reply = getattr(client, call["op"])(**args)
        reply.pop("ResponseMetadata", None)
        replies.append(reply)
    json.dump(replies, sys.stdout, default=str)


if __name__ == "__main__":
    main()
