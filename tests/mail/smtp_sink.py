#!/usr/bin/python3
"""A real SMTP server on loopback for the mail tests (Debian's aiosmtpd).

Every message it accepts becomes one JSON file in --dir, parsed with
Python's email package, so the tests read back what a mail client would
see: envelope, headers, the text body and the attachments (text with "\n" line ends). Optional
STARTTLS (--cert/--key, then required), or with --smtps TLS from the first
byte (SMTPS, as on port 465), and AUTH (--auth user:password).
It writes --dir/ready once it listens, and runs until SIGTERM.
"""
import argparse
import asyncio
import email
import email.policy
import json
import os
import signal
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class Sink:
    def __init__(self, folder):
        self.folder = folder
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content or envelope.content,
                                       policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain", "html"))
        attachments = []
        for part in msg.iter_attachments():
            content = part.get_content()
            if isinstance(content, bytes):
                content = content.decode("utf-8", "replace")
            content = content.replace("\r\n", "\n")
            attachments.append({"filename": part.get_filename(),
                                "content_type": part.get_content_type(),
                                "content": content})
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None,
            "authenticated": bool(session.authenticated),
            "headers": {k: str(v) for k, v in msg.items()},
            "subject": str(msg["subject"]),
            "content_type": body.get_content_type() if body else None,
            "body": body.get_content().replace("\r\n", "\n") if body else "",
            "attachments": attachments,
        }
        with self.lock:
            self.count += 1
            name = os.path.join(self.folder, "%04d.json" % self.count)
        with open(name + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(name + ".tmp", name)
        return "250 OK delivered"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--auth", help="user:password")
    p.add_argument("--smtps", action="store_true", help="TLS from the first byte (with --cert/--key)")
    p.add_argument("--only-login", action="store_true", help="offer AUTH LOGIN alone")
    args = p.parse_args()

    kwargs = {}
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
        if args.smtps:
            kwargs["ssl_context"] = context
        else:
            kwargs["tls_context"] = context
            kwargs["require_starttls"] = True
    if args.auth:
        user, password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = auth_data.login == user.encode() and auth_data.password == password.encode()
            return AuthResult(success=ok, handled=False)

        kwargs["authenticator"] = authenticator
        kwargs["auth_required"] = True
        # Over SMTPS the whole session is TLS already; aiosmtpd knows only STARTTLS.
        kwargs["auth_require_tls"] = bool(args.cert) and not args.smtps
        if args.only_login:
            kwargs["auth_exclude_mechanism"] = ["PLAIN"]

    controller = Controller(Sink(args.dir), hostname="127.0.0.1", port=args.port, **kwargs)
    controller.start()
    with open(os.path.join(args.dir, "ready"), "w") as f:
        f.write(str(args.port))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    stop.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
