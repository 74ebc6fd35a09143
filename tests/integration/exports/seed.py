"""Leads written straight into the sandbox's tables (fast), shaped as `crm.lead.add` stores them."""

from apps.sandbox.crm import CRM_ENTITIES
from apps.sandbox.models import SandboxRecord, SandboxSequence


def lead_data(record_id: int, title: str) -> dict:
    spec = CRM_ENTITIES["lead"]
    data = {name: None for name, (ftype, _) in spec["fields"].items() if ftype != "crm_multifield"}
    data.update(spec["defaults"])
    data.update({"ID": str(record_id), "TITLE": title, "ASSIGNED_BY_ID": "1", "CREATED_BY_ID": "1",
                 "DATE_CREATE": "2026-01-01T00:00:00+00:00", "OPPORTUNITY": f"{record_id % 1000}.00",
                 "STATUS_ID": "NEW" if record_id % 3 else "IN_PROCESS"})
    return data


def seed_leads(sandbox, count: int, *, start: int = 1, step: int = 1, chunk: int = 5000) -> list[int]:
    """`count` leads with IDs start, start+step, ... (gaps when step > 1); returns the IDs."""
    ids = [start + i * step for i in range(count)]
    for first in range(0, count, chunk):
        SandboxRecord.objects.bulk_create([
            SandboxRecord(portal=sandbox, entity="lead", record_id=rid, data=lead_data(rid, f"Lead {rid}"))
            for rid in ids[first:first + chunk]])
    seq, _ = SandboxSequence.objects.get_or_create(portal=sandbox, entity="lead")
    seq.last_id = max(seq.last_id, ids[-1] if ids else 0)
    seq.save(update_fields=["last_id"])
    return ids
