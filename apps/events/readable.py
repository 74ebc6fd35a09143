"""Which read method an event's content stands for (pure; the agent feed's filter).

An agent sees an event only if its grants on that portal cover the *read* method of the event's
entity with a policy other than deny (ONCRMLEADADD -> crm.lead.get, ONTASKUPDATE ->
tasks.task.get). Prefixes are matched longest first; an event no prefix names is shown to no
agent (fail closed), like an unknown method is `write` in the policy.
"""

from __future__ import annotations

from collections.abc import Sequence

from apps.policy.decide import DENY, GrantView, describe_method

#: Event-name prefix -> the read method whose grant makes the event visible.
READ_METHOD_BY_PREFIX: dict[str, str] = {
    "ONCRMLEAD": "crm.lead.get",
    "ONCRMDEALRECURRING": "crm.deal.recurring.get",
    "ONCRMDEAL": "crm.deal.get",
    "ONCRMCONTACT": "crm.contact.get",
    "ONCRMCOMPANY": "crm.company.get",
    "ONCRMQUOTE": "crm.quote.get",
    "ONCRMINVOICE": "crm.invoice.get",
    "ONCRMACTIVITY": "crm.activity.get",
    "ONCRMPRODUCTROW": "crm.productrow.list",
    "ONCRMPRODUCT": "crm.product.get",
    "ONCRMDYNAMICITEM": "crm.item.get",
    "ONCRMREQUISITE": "crm.requisite.get",
    "ONCRMADDRESS": "crm.address.list",
    "ONCRMCURRENCY": "crm.currency.get",
    "ONCRMTIMELINECOMMENT": "crm.timeline.comment.get",
    "ONCRMTIMELINE": "crm.timeline.bindings.list",
    "ONCRMCATEGORY": "crm.category.get",
    "ONCRMSTATUS": "crm.status.list",
    "ONTASKCOMMENT": "task.commentitem.get",
    "ONTASK": "tasks.task.get",
    "ONUSER": "user.get",
    "ONDEPARTMENT": "department.get",
    "ONCALENDAR": "calendar.event.getbyid",
    "ONSONETGROUP": "sonet_group.get",
    "ONIMBOT": "imbot.bot.list",
    "ONIMCONNECTOR": "imbot.bot.list",
    "ONIM": "im.dialog.get",
    "ONOPENLINE": "imopenlines.session.history.get",
    "ONDISK": "disk.file.get",
    "ONLISTS": "lists.element.get",
    "ONCATALOG": "catalog.product.get",
    "ONSALE": "sale.order.get",
    "ONVOXIMPLANT": "voximplant.statistic.get",
    "ONEXTERNALCALL": "telephony.externalcall.searchcrmentities",
    "ONBIZPROC": "bizproc.workflow.instances",
    "ONAPP": "app.info",
}
_PREFIXES = sorted(READ_METHOD_BY_PREFIX, key=len, reverse=True)
#: Events that only drive the plane itself and never reach the feed.
INTERNAL_EVENTS = frozenset({"ONOFFLINEEVENT"})


def read_method_for(event: str) -> str | None:
    name = (event or "").upper()
    if name in INTERNAL_EVENTS:
        return None
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            return READ_METHOD_BY_PREFIX[prefix]
    return None


def may_read(grants: Sequence[GrantView], event: str) -> bool:
    method = read_method_for(event)
    if method is None:
        return False
    described = describe_method(grants, method)
    return bool(described["granted"]) and described["policy"] not in (None, DENY)
