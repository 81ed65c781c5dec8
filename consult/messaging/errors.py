"""The refusals of secure messaging.

::

    VigilError
    └── ConsultError
        └── MessagingError             .code
            ├── MessageInvalid         a value the rules refuse (.field): empty, too long, wrong kind
            ├── NotAllowed             the caller may see the thread but not do this (not the author,
            │                          not a participant: break-glass reads only, a tombstone is final)
            ├── AttachmentRefused      a file that may not be attached (.code: 'too_large', 'empty',
            │                          'type_not_allowed', 'type_mismatch', 'already_sent', 'not_found')
            └── AttachmentUnreadable   a stored attachment that does not open ('key_changed', 'tampered')

Messages name codes and ids only, never a message's text or a file's content.
"""

from __future__ import annotations

from consult.errors import ConsultError

__all__ = ["AttachmentRefused", "AttachmentUnreadable", "MessageInvalid", "MessagingError", "NotAllowed"]


class MessagingError(ConsultError):
    reason = "messaging"

    def __init__(self, detail: str, *, code: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code


class MessageInvalid(MessagingError):
    reason = "message_invalid"

    def __init__(self, detail: str, *, code: str, field: str) -> None:
        super().__init__(detail, code=code)
        self.field = field


class NotAllowed(MessagingError):
    reason = "message_not_allowed"


class AttachmentRefused(MessagingError):
    reason = "attachment_refused"


class AttachmentUnreadable(MessagingError):
    reason = "attachment_unreadable"
