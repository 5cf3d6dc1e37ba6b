"""A logging filter that keeps personal data out of every log line."""

from __future__ import annotations

import logging

from consent.masking import mask_text

_exception_formatter = logging.Formatter()


class MaskPersonalData(logging.Filter):
    """Masks emails and E.164 phones in the message as formatted with its
    args, and in the traceback text (an exception's message often quotes the
    value that failed). Attached to handlers, so it also covers records
    propagated from libraries' loggers, which logger filters would not see."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask_text(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = _exception_formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return True
