"""Optional mypy plugin: checks the keyword arguments of model constructors.

rom's types need no plugin (see ``docs/guide/typing.rst``), but ``User(emial='x')`` cannot
be caught without one: rom columns are declared without annotations, which
``typing.dataclass_transform`` requires. Enable it in the mypy configuration::

    [mypy]
    plugins = rom.mypy_plugin

Then ``Model(...)`` calls accept exactly the model's column names as keywords, each typed as
its column reads (``Optional[...]`` unless required; references also take an id). Primary
keys, ``IndexOnly``, ``OneToMany`` and ``UnsafeColumn`` attributes cannot be passed, as at
run time. Models with their own ``__init__`` keep it. Missing required columns are left to
the run-time check (a default may provide them). Never imported by rom itself.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Type

from mypy.maptype import map_instance_to_supertype
from mypy.nodes import ARG_NAMED_OPT, TypeInfo, Var
from mypy.plugin import FunctionSigContext, Plugin
from mypy.types import AnyType, CallableType, Instance, ProperType, TypeOfAny
from mypy.types import Type as MypyType
from mypy.types import UnionType, get_proper_type

MODEL = 'rom.model.Model'
COLUMN = 'rom._column.Column'
NOT_ARGUMENTS = ('rom._coltypes.PrimaryKey', 'rom._coltypes.IndexOnly',
                 'rom._relations.OneToMany')
REFERENCES = ('rom._relations.ManyToOne', 'rom._relations.ForeignModel')


class RomPlugin(Plugin):
    """Gives ``Model`` subclasses a keyword-checked constructor signature."""

    def get_function_signature_hook(
            self, fullname: str) -> Optional[Callable[[FunctionSigContext], CallableType]]:
        symbol = self.lookup_fully_qualified(fullname)
        if symbol is None or not isinstance(symbol.node, TypeInfo):
            return None
        info = symbol.node
        if info.fullname == MODEL or not info.has_base(MODEL):
            return None
        return self._constructor

    def _constructor(self, ctx: FunctionSigContext) -> CallableType:
        signature = ctx.default_signature
        ret = get_proper_type(signature.ret_type)
        if not isinstance(ret, Instance):
            return signature
        info = ret.type
        for base in info.mro:
            if base.fullname == MODEL:
                break
            if '__init__' in base.names:  # a model with its own constructor keeps it
                return signature
        int_symbol = self.lookup_fully_qualified('builtins.int')
        names: List[str] = []
        kinds: List[MypyType] = []
        seen = set()
        for base in info.mro:
            if base.fullname == MODEL:
                break
            for name, symbol in base.names.items():
                if name in seen or not isinstance(symbol.node, Var):
                    continue
                seen.add(name)
                declared = symbol.node.type
                value = get_proper_type(declared) if declared is not None else None
                if value is None or isinstance(value, AnyType):
                    # not inferred (yet), or Any: accept the name rather than reject it
                    kind: Optional[MypyType] = AnyType(TypeOfAny.special_form)
                else:
                    kind = _keyword_type(value, int_symbol)
                if kind is not None:
                    names.append(name)
                    kinds.append(kind)
        extra_ok = self.lookup_fully_qualified('builtins.bool')
        if extra_ok is not None and isinstance(extra_ok.node, TypeInfo):
            names.append('_extra_ok')
            kinds.append(Instance(extra_ok.node, []))
        return signature.copy_modified(
            arg_types=kinds, arg_kinds=[ARG_NAMED_OPT] * len(kinds), arg_names=names)


def _keyword_type(value: ProperType, int_symbol: object) -> Optional[MypyType]:
    if not isinstance(value, Instance) or not value.type.has_base(COLUMN):
        return None
    if any(value.type.has_base(name) for name in NOT_ARGUMENTS):
        return None
    column_info = next(base for base in value.type.mro if base.fullname == COLUMN)
    read = map_instance_to_supertype(value, column_info).args
    kind: MypyType = read[0] if read else AnyType(TypeOfAny.special_form)
    node = getattr(int_symbol, 'node', None)
    if any(value.type.has_base(name) for name in REFERENCES) and isinstance(node, TypeInfo) \
            and not isinstance(get_proper_type(kind), AnyType):
        kind = UnionType.make_union([kind, Instance(node, [])])  # an entity, or its id
    return kind


def plugin(version: str) -> Type[Plugin]:
    """mypy's entry point."""
    return RomPlugin
