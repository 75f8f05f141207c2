"""Declarations read only by type checkers (never imported at run time).

``rom`` types its public API without a mypy plugin: columns are generic descriptors whose
constructor overloads give ``str`` for ``Text(required=True)`` and ``Optional[str]``
otherwise, and ``Model.get``/``Model.query`` are generic over the model class.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Type, TypeVar

if TYPE_CHECKING:  # pragma: no cover - never runs
    from typing_extensions import TypedDict

    from .model import Model
    from .query import Query

    _M = TypeVar('_M', bound=Model)

    class ColumnOptions(TypedDict, total=False):
        """The keyword options of scalar columns besides ``required``."""
        default: Any
        unique: bool
        index: bool
        keygen: Optional[Callable[..., Any]]
        prefix: bool
        suffix: bool
        keygen2: Optional[Callable[[str, Dict[Any, Any]], Any]]

    class QueryProperty:
        """``Model.query``: a new ``Query`` over the model it is read from."""

        def __get__(self, obj: Any, cls: Type[_M]) -> Query[_M]: ...
