#!/usr/bin/env python3
"""An independent reading of each message of fixtures/corpus/, by CPython's `email`
package: what the corpus test compares mailhook's events with.

Usage: python3 tests/corpus/reference.py [DIR]  (default: fixtures/corpus)
Prints JSON: for each message (its path below DIR), its attachments (the SHA-256 of
each leaf part that is not body text, with its file name and media type) and
whether it has body text."""
import hashlib
import json
import os
import sys
from email import policy
from email.parser import BytesParser


def is_body_text(part):
    """Text that a reader sees as the message's body: text/plain or text/html, not an attachment, no file name."""
    return part.get_content_type() in ("text/plain", "text/html") and part.get_content_disposition() != "attachment" and not part.get_filename()


def payload_bytes(part):
    try:
        data = part.get_payload(decode=True)
    except Exception:  # a defect Python cannot decode past: the bytes as they came
        data = None
    if data is None:
        raw = part.get_payload()
        data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""
    return data


def leaves(part):
    """The leaf parts, not descending into an attached message (which is one attachment, as mailhook keeps it)."""
    if part.is_multipart() and part.get_content_maintype() != "message":
        for sub in part.get_payload():
            yield from leaves(sub)
    else:
        yield part


def as_text(part, data):
    try:
        return data.decode(part.get_content_charset() or "us-ascii", "replace")
    except LookupError:
        return data.decode("latin-1")


def read(path):
    with open(path, "rb") as f:
        # parsebytes, not parse: parse reads through a text wrapper that turns CRLF into LF.
        msg = BytesParser(policy=policy.compat32).parsebytes(f.read())
    attachments, texts, messages, text = [], [], 0, False
    for part in leaves(msg):
        # An attached message (or a message that is one, message/rfc822 at the top) is one attachment.
        if part.get_content_maintype() == "message":
            messages += 1
            continue
        data = payload_bytes(part)
        # A multipart CPython could not split is a leaf of its raw text: body text, as any reader shows it.
        if is_body_text(part) or part.get_content_maintype() == "multipart":
            text = text or bool(data.strip())
            texts.append({"sha256": hashlib.sha256(data).hexdigest(), "text": as_text(part, data)})
            continue
        a = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "filename": part.get_filename(), "type": part.get_content_type()}
        if part.get_content_maintype() == "text":
            a["text"] = as_text(part, data)
        attachments.append(a)
    return {"attachments": attachments, "texts": texts, "messages": messages, "text": text, "defects": [type(d).__name__ for d in msg.defects]}


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "fixtures/corpus"
    out = {}
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            if name.endswith(".eml"):
                path = os.path.join(folder, name)
                out[os.path.relpath(path, root)] = read(path)
    json.dump(out, sys.stdout, indent=1, sort_keys=True)


main()
