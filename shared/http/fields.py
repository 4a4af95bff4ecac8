"""Field types shared by the services' request schemas."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
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

#: Ids of customers and staff as frontends send them.
IDENTIFIER_PATTERN = r"^[A-Za-z0-9._:@-]{1,64}$"
Identifier = Annotated[str, StringConstraints(strip_whitespace=True, pattern=IDENTIFIER_PATTERN)]


_EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
_LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def _plausible(value: datetime) -> datetime:
    if not _EARLIEST <= value < _LATEST:
        raise ValueError("must lie between 1990 and 2100")
    return value


#: An RFC 3339 time with an offset, within a range where date arithmetic cannot overflow.
Timestamp = Annotated[AwareDatetime, AfterValidator(_plausible)]


class RequestModel(BaseModel):
    """Base of request bodies: unknown fields are refused, not silently dropped."""

    model_config = ConfigDict(extra="forbid")
