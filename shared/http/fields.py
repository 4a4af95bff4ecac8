"""Field types shared by the services' request schemas."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, StringConstraints

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _no_control_characters(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


_Clean = AfterValidator(_no_control_characters)

#: Free text: trimmed, bounded, no control characters other than tab and newlines.
Text100 = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), _Clean
]
Text500 = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), _Clean
]
Text2000 = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000), _Clean
]
Text5000 = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5000), _Clean
]
OptionalText2000 = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000), _Clean]

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
