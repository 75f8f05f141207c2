"""Low-level entry points of rom 1.1.2's ``rom.model`` kept for existing callers."""
from __future__ import annotations

from typing import Any, Dict, Iterator, List

from ._write_plan import IndexEntries, WritePlan
from ._write_script import run_plans


def redis_writer_lua(conn: Any, pkey: str, namespace: str, id: Any, unique: Dict[str, Any],
                     udelete: Dict[str, Any], delete: List[str], data: Dict[str, Any],
                     keys: List[str], scored: Dict[str, Any], prefix: List[Any],
                     suffix: List[Any], geo: List[Any], old_data: Dict[str, Any],
                     is_delete: bool, keys_to_delete: List[str]) -> None:
    """Low-level write entry point with rom 1.1.2's argument list (see ``rom._write_script``)."""
    id_text = str(id)
    race = [] if not old_data else [(pkey, id_text)] + [
        (k, v) for k, v in old_data.items() if k in data]
    entries = IndexEntries(list(keys), {k: str(v) for k, v in scored.items()},
                           [tuple(p) for p in prefix], [tuple(s) for s in suffix],
                           [tuple(g) for g in geo])
    plan = WritePlan(namespace, id_text, pkey, bool(is_delete), 'd' if is_delete else 's', race,
                     [], list(unique.items()), list(udelete.items()), [], list(delete),
                     list(data.items()), list(keys_to_delete), entries, 0, {})
    done, failure = run_plans(conn, [plan])
    if failure is not None:
        raise failure


def _zrange_limit_iterator(conn: Any, key: str, vstart: Any, end: Any,
                           count: int = 100) -> Iterator[List[Any]]:
    """Pages of ``ZRANGEBYSCORE key vstart end LIMIT start count`` until a short page."""
    start = 0
    while True:
        page = conn.execute_command('ZRANGEBYSCORE', key, vstart, end, 'LIMIT', start, count)
        yield page
        if len(page) < count:
            return
        start += len(page)
