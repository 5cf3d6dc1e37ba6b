"""SMS encoding and segment count. No maintained counter exists, so this
follows the GSM 03.38 rules directly: a text the GSM-7 alphabet can carry is
measured in septets (the extension table `€ [ ] { } ~ ^ | \\` costs two),
anything else goes as UCS-2, measured in UTF-16 code units (an emoji costs
two). One message holds 160 septets or 70 units; a split message carries a
header, leaving 153 or 67 per part."""

from __future__ import annotations

import math
from dataclasses import dataclass

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)

GSM7 = "GSM-7"
UCS2 = "UCS-2"
SINGLE = {GSM7: 160, UCS2: 70}
PER_PART = {GSM7: 153, UCS2: 67}



def _one_septet(char: str) -> bool:
    try:
        return len(char.encode("gsm03.38")) == 1
    except UnicodeEncodeError:
        return False


# The ASCII characters GSM-7 carries in one septet, as the codec says: most
# texts are made of these alone, and then the length needs no encoding.
_ONE_SEPTET_ASCII = frozenset(char for char in map(chr, range(128)) if _one_septet(char))


@dataclass(frozen=True)
class SmsInfo:
    encoding: str
    length: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int


def sms_info(text: str) -> SmsInfo:
    try:
        if text.isascii() and _ONE_SEPTET_ASCII.issuperset(text):
            encoding, length = GSM7, len(text)
        else:
            encoding, length = GSM7, len(text.encode("gsm03.38"))
    except UnicodeEncodeError:
        encoding, length = UCS2, len(text.encode("utf-16-le")) // 2
    if length == 0:
        return SmsInfo(encoding, 0, 0)
    if length <= SINGLE[encoding]:
        return SmsInfo(encoding, length, 1)
    return SmsInfo(encoding, length, math.ceil(length / PER_PART[encoding]))
