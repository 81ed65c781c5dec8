"""The demo's mailbox: a real SMTP client delivers to it; each message is kept as a file, and its
recipients and subject are what the demo shows."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from pathlib import Path

from vigil_cli.demo.mailbox import Mailbox
from vigil_testkit.net import free_port


def test_messages_are_kept_in_order_with_recipient_and_subject(tmp_path: Path) -> None:
    box = Mailbox(tmp_path / "mailbox")
    box.start(free_port())
    try:
        for n in (1, 2):
            msg = EmailMessage()
            msg["From"] = "vigil@demo.invalid"
            msg["To"] = f"clinician{n}@demo.invalid"
            msg["Subject"] = f"Vigil: message {n}"
            msg.set_content(f"open http://127.0.0.1:8000/ack/{n}/token")
            with smtplib.SMTP("127.0.0.1", box.port, timeout=10) as smtp:
                smtp.send_message(msg)
        got = box.since(0)
        assert [(m.to, m.subject, m.path.name) for m in got] == [
            (("clinician1@demo.invalid",), "Vigil: message 1", "0001.eml"),
            (("clinician2@demo.invalid",), "Vigil: message 2", "0002.eml"),
        ]
        assert "/ack/2/token" in got[1].path.read_text(encoding="utf-8")
        assert box.since(1) == got[1:]
    finally:
        box.stop()
