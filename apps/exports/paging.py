"""How an export pages a v2 list method, with no database and no HTTP (FACTS §3, §4).

Two techniques, both one `batch` request (one slot of the portal's bucket) for up to 50 pages of
50 rows:

- `id_chain` (the order is by ID, or not given): every page is `start=-1` (no count query) with
  the order by ID and a filter `>ID` (`<ID` descending) on the last ID seen. The first page of a
  batch names that ID literally; page k names the last row of page k-1 through a `$result`
  reference (`$result[p{k-1}][49][ID]`), so 50 pages run in order inside one request. A page with
  fewer than 50 rows is the end. Pages after a short one ran with a reference that had nothing to
  point at, so they are ignored; every row is checked to be strictly beyond the last ID taken,
  so nothing is taken twice whatever the portal did with an unresolved reference.
- `offsets` (any other order): the pages at `start` = offset, offset+50, ... in one batch, the
  count from the first page bounding how many are asked for. Rows that move while the export
  runs may be missed or repeated (the docs' own caveat for offset paging).

The state an export keeps between batches is only `last_id` (id_chain) or `next_offset`
(offsets), so a restarted worker asks for exactly the rows after the ones it saved.
"""

from dataclasses import dataclass, field

PAGE = 50
MAX_PAGES = 50  # commands per batch (FACTS §4)
ID_FIELDS = ("ID", "id")


def _field_and_prefix(key) -> tuple[str, str]:
    text = str(key).strip()
    for prefix in (">=", "<=", "!=", ">", "<", "=", "!"):
        if text.startswith(prefix):
            return prefix, text[len(prefix):].strip().upper()
    return "", text.upper()


def order_by_id(order: dict) -> tuple[bool, bool]:
    """(paged by ID, descending) for an order map: empty, or ID alone, pages by ID."""
    if not order:
        return True, False
    if len(order) != 1:
        return False, False
    key, value = next(iter(order.items()))
    if str(key).strip().upper() != "ID":
        return False, False
    return True, str(value).strip().upper() == "DESC"


def cursor_key(descending: bool) -> str:
    return "<ID" if descending else ">ID"


def initial_last_id(filter_: dict, descending: bool) -> int | None:
    """A `>ID` (`<ID`) bound the agent put in its filter is where the chain starts."""
    wanted = "<" if descending else ">"
    for key, value in filter_.items():
        prefix, name = _field_and_prefix(key)
        if prefix == wanted and name == "ID":
            try:
                return int(str(value).strip())
            except ValueError:
                return None
    return None


def chain_select(select: list) -> tuple[list, bool]:
    """The select sent when paging by ID, and whether ID was added only for paging."""
    if not select or any(str(s).strip().upper() in ("ID", "*") for s in select):
        return list(select), False
    return [*select, "ID"], True


def chain_commands(*, method: str, select: list, filter_: dict, last_id: int | None, descending: bool,
                   pages: int) -> list[tuple[str, str, dict]]:
    """`pages` commands p0..p{n-1}: p0 from `last_id`, each next one from the previous page's
    50th row."""
    key = cursor_key(descending)
    base = {k: v for k, v in filter_.items() if _field_and_prefix(k) != (key[0], "ID")}
    commands = []
    for index in range(max(1, min(pages, MAX_PAGES))):
        page_filter = dict(base)
        if index:
            page_filter[key] = f"$result[p{index - 1}][{PAGE - 1}][ID]"
        elif last_id is not None:
            page_filter[key] = last_id
        params = {"order": {"ID": "DESC" if descending else "ASC"}, "filter": page_filter, "start": -1}
        if select:
            params["select"] = list(select)
        commands.append((f"p{index}", method, params))
    return commands


def offset_commands(*, method: str, select: list, filter_: dict, order: dict, offset: int,
                    pages: int) -> list[tuple[str, str, dict]]:
    commands = []
    for index in range(max(1, min(pages, MAX_PAGES))):
        params = {"start": offset + index * PAGE}
        if select:
            params["select"] = list(select)
        if filter_:
            params["filter"] = dict(filter_)
        if order:
            params["order"] = dict(order)
        commands.append((f"p{index}", method, params))
    return commands


def pages_wanted(*, total: int | None, taken: int) -> int:
    """Pages to ask for in the next batch: enough for what the count says is left, plus one to
    see the end, never more than 50."""
    if total is None:
        return MAX_PAGES
    left = max(0, total - taken)
    return max(1, min(MAX_PAGES, -(-left // PAGE) + 1))


def rows_of(result) -> list | None:
    """The rows of one page: a list, or the one list inside an object (`items`, `tasks`)."""
    if isinstance(result, list):
        return result
    if isinstance(result, dict):
        lists = [v for v in result.values() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0]
    return None


def row_id(row) -> int | None:
    if not isinstance(row, dict):
        return None
    for name in ID_FIELDS:
        if name in row:
            try:
                return int(str(row[name]).strip())
            except ValueError:
                return None
    return None


@dataclass
class Taken:
    """What one batch's answer yields, in page order."""

    rows: list = field(default_factory=list)
    last_id: int | None = None
    next_offset: int = 0
    done: bool = False
    error: dict | None = None  # the first refused page's {"error", "error_description"}
    error_page: str | None = None


def take_chain(*, names: list[str], results: dict, errors: dict, last_id: int | None,
               descending: bool) -> Taken:
    taken = Taken(last_id=last_id)
    for name in names:
        if name in errors:
            taken.error, taken.error_page = errors[name], name
            return taken
        rows = rows_of(results.get(name))
        if rows is None:
            return taken
        accepted = []
        for row in rows:
            rid = row_id(row)
            if rid is None:
                taken.error = {"error": "NO_ID",
                               "error_description": "A row came without an ID; the export pages by ID."}
                taken.error_page = name
                taken.rows.extend(accepted)
                return taken
            beyond = taken.last_id is None or (rid < taken.last_id if descending else rid > taken.last_id)
            if not beyond:
                break
            accepted.append(row)
            taken.last_id = rid
        taken.rows.extend(accepted)
        if len(accepted) != len(rows):
            return taken  # an unresolved reference: start the next batch from the last ID taken
        if len(rows) < PAGE:
            taken.done = True
            return taken
    return taken


def take_offsets(*, names: list[str], results: dict, errors: dict, offset: int) -> Taken:
    taken = Taken(next_offset=offset)
    for name in names:
        if name in errors:
            taken.error, taken.error_page = errors[name], name
            return taken
        rows = rows_of(results.get(name))
        if rows is None:
            return taken
        taken.rows.extend(rows)
        taken.next_offset += PAGE
        if len(rows) < PAGE:
            taken.done = True
            return taken
    return taken
