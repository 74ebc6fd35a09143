"""Reads of exports. Every agent query starts at `exports_for_agent`, so no other agent's export
can be reached (a foreign id answers 404, like a missing one)."""

from apps.core.exceptions import NotFound
from apps.plans.selectors import is_uuid

from . import files
from .choices import ExportStatus
from .models import Export


def exports_for_agent(agent):
    return Export.objects.filter(agent=agent).select_related("portal", "plan")


def export_get_for_agent(*, agent, export_id) -> Export:
    export = exports_for_agent(agent).filter(pk=export_id).first() if is_uuid(export_id) else None
    if export is None:
        raise NotFound("No such export.")
    return export


def export_list_for_agent(*, agent, limit: int = 50) -> list[Export]:
    return list(exports_for_agent(agent).order_by("-created_at", "-id")[:limit])


def export_progress(export: Export) -> dict:
    """Rows fetched, the estimated total (the list's `total` when the plan ran), the rate over
    the time spent fetching, and the time left at that rate."""
    rate = export.rows_written / export.active_seconds if export.active_seconds > 0 else None
    total = export.total_estimate
    left = None
    if total is not None and rate:
        left = max(0.0, (total - export.rows_written) / rate)
    if export.status == ExportStatus.SUCCEEDED:
        left = 0.0
    percent = None
    if total:
        percent = min(100.0, 100.0 * export.rows_written / total)
    if export.status == ExportStatus.SUCCEEDED:
        percent = 100.0
    return {
        "rows_fetched": export.rows_written,
        "estimated_total": total,
        "rows_per_second": round(rate, 1) if rate is not None else None,
        "seconds_left": round(left, 1) if left is not None else None,
        "percent": round(percent, 1) if percent is not None else None,
        "requests": export.requests,
    }


def export_file_ready(export: Export) -> bool:
    return (export.status == ExportStatus.SUCCEEDED and export.file_removed_at is None
            and files.export_path(export).exists())
