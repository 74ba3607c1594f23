"""One validator for every user-chosen name and one parser for every reference.

Names of datasets, models and aliases share one alphabet so that a name that is valid in
one place is valid everywhere (URLs, file paths, Prometheus labels). ``fullmatch`` is used
on purpose: ``re.match`` with ``$`` accepts a trailing newline (``"ok\\n"``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from loopml.core.errors import InvalidInputError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,249}")
_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,99}")
_ASCII_DIGITS = re.compile(r"[0-9]{1,18}")
RESERVED_ALIASES = frozenset({"latest"})


def check_name(name: object, what: str = "name") -> str:
    """``name`` if it is a valid dataset/model name, else an ``InvalidInputError``."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInputError(
            f"{name!r} is not a valid {what}: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit (at most 250 characters)"
        )
    return name


def check_alias(alias: object) -> str:
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias) or alias in RESERVED_ALIASES:
        raise InvalidInputError(
            f"alias {alias!r} is not valid: use letters, digits, '_' and '-', starting with a "
            "letter (at most 100 characters); 'latest' is reserved"
        )
    return alias


def parse_positive_int(text: str, what: str) -> int:
    """ASCII digits only: ``str.isdigit`` is true for '²' and other non-ASCII digits."""
    if not _ASCII_DIGITS.fullmatch(text) or int(text) < 1:
        raise InvalidInputError(f"{what} must be a positive whole number, not {text!r}")
    return int(text)


def check_relative_path(path: object, what: str) -> str:
    """``path`` if it is a plain relative POSIX path that stays inside its folder: no empty,
    '.' or '..' parts, no leading '/', no backslash, control character or lone surrogate.
    Files of a tree and names of artifacts are later joined to a folder on someone's disk."""
    if (
        not isinstance(path, str)
        or not path
        or len(path) > 1000
        or path.startswith("/")
        or "\\" in path
        or any(ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF for c in path)
        or any(part in ("", ".", "..") for part in path.split("/"))
    ):
        raise InvalidInputError(
            f"{what} {path!r} is not a plain relative path: use names separated by '/', "
            "without '.', '..', a leading '/', backslashes or control characters"
        )
    return path


@dataclass(frozen=True)
class Ref:
    """A parsed ``name``, ``name:3``, ``name:latest`` or ``name@alias``.

    ``version`` and ``alias`` are both None for the latest version.
    """

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        if self.version is not None:
            return f"{self.name}:{self.version}"
        return self.name


def parse_ref(ref: object, what: str = "reference", *, allow_alias: bool = True) -> Ref:
    """Parse a reference; every malformed form is an ``InvalidInputError`` naming the forms."""
    forms = "'name', 'name:3' or 'name@alias'" if allow_alias else "'name' or 'name:3'"
    if not isinstance(ref, str) or ("@" in ref and not allow_alias):
        raise InvalidInputError(f"{ref!r} is not a {what}; use {forms}")
    try:
        if "@" in ref:
            name, _, alias = ref.partition("@")
            return Ref(check_name(name), alias=check_alias(alias))
        name, sep, version = ref.partition(":")
        check_name(name)
        if not sep or version == "latest":
            return Ref(name)
        return Ref(name, version=parse_positive_int(version, "the version after ':'"))
    except InvalidInputError as exc:
        raise InvalidInputError(f"{ref!r} is not a {what} ({exc}); use {forms}") from None
