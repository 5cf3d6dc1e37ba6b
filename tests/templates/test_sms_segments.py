from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from templates import services
from templates.sms import sms_info
from tests.consent.factories import ContactFactory
from tests.templates.factories import approved_template

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("text", "encoding", "length", "segments"), [
    ("", "GSM-7", 0, 0),
    ("a" * 160, "GSM-7", 160, 1),
    ("a" * 161, "GSM-7", 161, 2),
    ("a" * 306, "GSM-7", 306, 2),
    ("a" * 307, "GSM-7", 307, 3),
    ("€" * 80, "GSM-7", 160, 1),          # extension table: two septets each
    ("€" * 81, "GSM-7", 162, 2),
    ("[]{}~^|\\" * 20, "GSM-7", 320, 3),
    ("Ça va? é è ù ì ò ü ñ à", "GSM-7", 22, 1),  # accented letters that GSM-7 has
    ("Olá", "UCS-2", 3, 1),                   # á is not one of them
    ("ç" * 70, "UCS-2", 70, 1),            # lower-case ç is not in GSM-7
    ("ç" * 71, "UCS-2", 71, 2),
    ("😀" * 35, "UCS-2", 70, 1),           # an emoji is two UTF-16 code units
    ("😀" * 36, "UCS-2", 72, 2),
    ("a" * 134 + "😀", "UCS-2", 136, 3),    # one emoji turns 135 GSM-7 chars into UCS-2
])
def test_encoding_and_segments(text, encoding, length, segments):
    info = sms_info(text)
    assert (info.encoding, info.length, info.segments) == (encoding, length, segments)


# Plain ASCII, the extension table, a GSM-7 accent and characters GSM-7 lacks.
_ALPHABET = st.sampled_from([*map(chr, range(128)), "€", "é", "ç", "😀"])


@given(st.text(alphabet=_ALPHABET, max_size=400))
def test_the_ascii_shortcut_measures_as_the_codec_does(text):
    """sms_info skips the encoder for texts of one-septet ASCII; the count
    must be the one the gsm03.38 codec gives."""
    try:
        expected = ("GSM-7", len(text.encode("gsm03.38")))
    except UnicodeEncodeError:
        expected = ("UCS-2", len(text.encode("utf-16-le")) // 2)
    info = sms_info(text)
    assert (info.encoding, info.length) == expected


def test_the_segment_count_is_stored_on_the_variant_while_editing(draft, marketer):
    template = services.template_create(key="sms", name="Sms", channel="sms", message_class="operational",
                                        actor=marketer)
    version = services.version_create_draft(template=template, actor=marketer)
    variant = services.variant_save(version=version, actor=marketer, locale="en", body="Ol\u00e1 😀 " + "a" * 70)
    assert (variant.sms_encoding, variant.sms_segments) == ("UCS-2", 2)


def test_the_rendered_message_carries_encoding_and_segments_of_the_final_text(db):
    approved_template("hello-sms", "sms", content={"body": "Hi {{ contact.first_name }}"},
                      variables=[{"path": "contact.first_name", "fallback": "there"}])
    contact = ContactFactory(attributes={"first_name": "Zoë 😀"})
    rendered = services.render_for_send(template_key="hello-sms", contact=contact,
                                        data=services.render_context(contact))
    assert rendered.content == {"body": "Hi Zoë 😀", "encoding": "UCS-2", "segments": 1}
