"""Field types shared by the services' request schemas."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    Strict,
    StringConstraints,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

# Free text as two character classes, written so that Python's `re` and ECMA-262 (JSON Schema's
# `pattern`) read them alike. Refused anywhere: C0 controls but tab and line breaks, DEL, C1
# controls, and the bidirectional controls that make text read otherwise than it is stored
# ("abc\u202egnp.exe" shows as "abcexe.png").
_FORBIDDEN = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
# Allowed, but showing nothing on their own: whitespace, zero-width characters (U+200D also
# joins emoji), variation selectors, fillers and blanks. Text needs one character outside both.
_BLANK = (
    r"\t\n\r \u00a0\u00ad\u034f\u115f\u1160\u1680\u180e\u2000-\u200d\u2028\u2029\u202f"
    r"\u205f-\u2064\u206a-\u206f\u2800\u3000\u3164\ufe00-\ufe0f\ufeff\uffa0"
)
#: Free text: some visible character, and nothing from `_FORBIDDEN`. Unambiguous (blanks, the
#: first visible character, the rest), so a backtracking engine matches it in linear time.
TEXT_PATTERN = rf"^[{_BLANK}]*[^{_FORBIDDEN}{_BLANK}][^{_FORBIDDEN}]*$"
#: Optional free text: empty, or as `TEXT_PATTERN`.
OPTIONAL_TEXT_PATTERN = rf"^(?:[{_BLANK}]*[^{_FORBIDDEN}{_BLANK}][^{_FORBIDDEN}]*)?$"
_FORBIDDEN_CHARACTER = re.compile(f"[{_FORBIDDEN}]")


class FreeText:
    """The rule of free text (names, descriptions, reasons, notes, refs...): checked on the
    text as sent, before it is trimmed, and stated as the field's `pattern` in the OpenAPI
    schema, so that what a client following the schema sends is what the service accepts."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.regex = re.compile(pattern)

    def check(self, value: Any) -> Any:
        if not isinstance(value, str):
            return value  # the string schema refuses it in its own words
        if found := _FORBIDDEN_CHARACTER.search(value):
            raise PydanticCustomError(
                "text_character",
                f"U+{ord(found.group()):04X} at position {found.start()} is not allowed: text "
                "may hold any script, emoji, punctuation, tabs and line breaks, but no control "
                "characters (U+0000-U+001F other than tab and line breaks, U+007F-U+009F) and no "
                "bidirectional controls (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069)",
            )
        if not self.regex.fullmatch(value):
            raise PydanticCustomError(
                "text_blank",
                "Text needs a visible character: spaces and invisible characters (zero-width "
                "spaces and joiners, U+2060, U+FEFF, fillers) alone are not text",
            )
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_before_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["pattern"] = self.pattern
        return json_schema


_Text = FreeText(TEXT_PATTERN)
_OptionalText = FreeText(OPTIONAL_TEXT_PATTERN)

#: Free text: trimmed, bounded, some visible character, no control or bidirectional characters.
Text100 = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), _Text
]
Text500 = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), _Text
]
Text2000 = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000), _Text
]
Text5000 = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5000), _Text
]
OptionalText2000 = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=2000), _OptionalText
]

#: An Idempotency-Key: 1 to 255 visible ASCII characters (a UUID is a good one).
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
#: A message's id on its complaint (`reply-1`, `ack-1`), as the confirmation route takes it.
NOTIFICATION_ID_PATTERN = r"^[a-z]+-[0-9]{1,4}$"

#: Ids of customers and staff as frontends send them.
IDENTIFIER_PATTERN = r"^[A-Za-z0-9._:@-]{1,64}$"
Identifier = Annotated[str, StringConstraints(strip_whitespace=True, pattern=IDENTIFIER_PATTERN)]


#: An RFC 3339 time with an offset, in the years 1990 to 2099 (as written, in its own offset):
#: what the schema states and the server takes, character for character. A fraction of a
#: second has at most six digits (microseconds); no lowercase `t` or `z`.
TIMESTAMP_PATTERN = (
    r"^(199[0-9]|20[0-9][0-9])-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)


def _rfc3339(value: Any) -> Any:
    """Only what the pattern states: no Unix seconds, no offset-less or out-of-range times
    (date arithmetic stays far from overflow). Times built in Python pass as they are."""
    if isinstance(value, str) and not _TIMESTAMP.match(value):
        raise PydanticCustomError(
            "timestamp_format",
            "must be an RFC 3339 time with an offset, in the years 1990 to 2099, e.g. "
            "2026-11-20T08:30:00+08:00",
        )
    if not isinstance(value, str | datetime):
        raise PydanticCustomError(
            "timestamp_type", "must be a string: an RFC 3339 time with an offset"
        )
    return value


#: An RFC 3339 time with an offset (TIMESTAMP_PATTERN).
Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_rfc3339),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": TIMESTAMP_PATTERN}),
]


#: A yes or no in a request body: JSON `true` or `false` only (not 0, 1 or "yes", which the
#: schema, type boolean, does not allow either).
Flag = Annotated[bool, Strict()]


class RequestModel(BaseModel):
    """Base of request bodies: unknown fields are refused, not silently dropped."""

    model_config = ConfigDict(extra="forbid")
