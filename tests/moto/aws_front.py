"""HTTPS in front of moto at the real AWS host names, for the real-pod e2e.

moto answers every AWS API but checks no web identity token: this front
terminates TLS for secretsmanager/ssm/sts.<region>.amazonaws.com (the names
the cluster's DNS gives its address), and for STS AssumeRoleWithWebIdentity
accepts only a token kubelet projected for IRSA: RS256 signed by the
cluster's service-account key, audience sts.amazonaws.com, not expired, a
ServiceAccount subject. Anything else is answered InvalidIdentityToken, as STS
would. Accepted subjects and roles are appended to --accepted, one line each.
Everything is then forwarded unchanged (Host included) to moto.

    python aws_front.py --listen 10.77.0.2:443 --cert c.pem --key k.pem \
        --backend 127.0.0.1:5000 --sa-pub sa.pub --accepted accepted.log
"""

import argparse
import base64
import http.client
import http.server
import json
import ssl
import time
import urllib.parse

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

AUDIENCE = "sts.amazonaws.com"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


def b64url(part):
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def check_token(token, public_key):
    """The subject of a valid IRSA token, or raises ValueError saying why."""
    try:
        header_b64, payload_b64, signature_b64 = token.split(".")
        header = json.loads(b64url(header_b64))
        claims = json.loads(b64url(payload_b64))
        signature = b64url(signature_b64)
    except Exception as exc:  # a malformed token is the client's fault
        raise ValueError(f"not a JWT: {type(exc).__name__}") from None
    if header.get("alg") != "RS256":
        raise ValueError(f"alg {header.get('alg')!r}")
    try:
        public_key.verify(
            signature,
            f"{header_b64}.{payload_b64}".encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except Exception:
        raise ValueError("signature not the cluster's") from None
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if AUDIENCE not in audiences:
        raise ValueError(f"audience {audience!r}")
    if claims.get("exp", 0) < time.time():
        raise ValueError("expired")
    subject = claims.get("sub", "")
    if not subject.startswith("system:serviceaccount:"):
        raise ValueError(f"subject {subject!r}")
    return subject


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--backend", required=True)
    parser.add_argument("--sa-pub", required=True)
    parser.add_argument("--accepted", required=True)
    args = parser.parse_args()
    with open(args.sa_pub, "rb") as f:
        public_key = serialization.load_pem_public_key(f.read())
    backend_host, backend_port = args.backend.rsplit(":", 1)

    class Front(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *values):
            # The path and status only: bodies and headers carry credentials.
            print(f"front: {self.command} {self.headers.get('Host')} {values[1] if len(values) > 1 else ''}", flush=True)

        def refuse(self, why):
            body = (
                '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
                "<Error><Type>Sender</Type><Code>InvalidIdentityToken</Code>"
                f"<Message>{why}</Message></Error><RequestId>front</RequestId></ErrorResponse>"
            ).encode()
            self.send_response(400)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def forward(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            host = (self.headers.get("Host") or "").split(":")[0]
            if host.startswith("sts.") and body:
                form = urllib.parse.parse_qs(body.decode(errors="replace"))
                if form.get("Action") == ["AssumeRoleWithWebIdentity"]:
                    token = (form.get("WebIdentityToken") or [""])[0]
                    try:
                        subject = check_token(token, public_key)
                    except ValueError as why:
                        print(f"front: refused a web identity token: {why}", flush=True)
                        return self.refuse(f"token refused: {why}")
                    role = (form.get("RoleArn") or [""])[0]
                    with open(args.accepted, "a") as f:
                        f.write(f"{subject} {role}\n")
            upstream = http.client.HTTPConnection(backend_host, int(backend_port), timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            self.send_response(response.status)
            for k, v in response.getheaders():
                if k.lower() not in HOP_BY_HOP and k.lower() not in ("server", "date"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            upstream.close()

        do_GET = do_POST = do_PUT = do_DELETE = forward

    host, port = args.listen.rsplit(":", 1)
    server = http.server.ThreadingHTTPServer((host, int(port)), Front)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"front: listening on {args.listen}, backend {args.backend}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
