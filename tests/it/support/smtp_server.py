"""A real SMTP server for the mail tests (aiosmtpd), on 127.0.0.1.

    smtp_server.py PORT OUTFILE [CERT KEY]

Appends one JSON line per message to OUTFILE: envelope, subject, the decoded text and
HTML parts, and whether the session was under TLS. With CERT and KEY it offers STARTTLS
and requires it before MAIL. Prints "ready" when it accepts connections; runs until
killed.
"""

import asyncio
import email
import json
import ssl
import sys
from email import policy

from aiosmtpd.controller import Controller


class Record:
    def __init__(self, out):
        self.out = out

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=policy.default)
        text = msg.get_body(("plain",))
        html = msg.get_body(("html",))
        rec = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "subject": str(msg["subject"]),
            "message_id": str(msg["message-id"]),
            "text": text.get_content() if text else "",
            "html": html.get_content() if html else "",
            "tls": session.ssl is not None,
        }
        with open(self.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        return "250 OK queued as test-1"


def main():
    port, out = int(sys.argv[1]), sys.argv[2]
    kwargs = {}
    if len(sys.argv) > 4:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(sys.argv[3], sys.argv[4])
        kwargs = {"tls_context": ctx, "require_starttls": True}
    controller = Controller(Record(out), hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    print("ready", flush=True)
    try:
        asyncio.get_event_loop().run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
