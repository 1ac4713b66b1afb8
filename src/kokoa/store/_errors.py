"""The store's errors: one base type, each naming the field at fault and saying why."""

from __future__ import annotations


class StoreError(Exception):
    """A request the store refused; ``field`` names the input at fault, ``message`` says why."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class Invalid(StoreError):
    """A value is malformed, out of range, or inconsistent with another one."""


class Conflict(StoreError):
    """The write would break a uniqueness rule or an invariant (a duplicate name, the last Owner...)."""


class NotFound(StoreError):
    """No object of this kind has this id (or it belongs to another organization)."""

    def __init__(self, kind: str, id: str) -> None:
        super().__init__("id", f"no {kind} with id {id!r}")
        self.kind = kind
        self.id = id


class SchemaMismatch(StoreError):
    """The database's schema revision is not the one this version of Kokoa runs with."""

    def __init__(self, current: str | None, head: str, message: str) -> None:
        super().__init__(None, message)
        self.current = current
        self.head = head
