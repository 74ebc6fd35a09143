"""The agent API of exports (JSON, bearer auth). Views are adapters: parse, call one service,
render."""

from django.http import FileResponse

from apps.agents.auth import authenticate_agent
from apps.agents.ratelimit import check_rate
from apps.core.api import json_endpoint, parse_json_body
from apps.core.exceptions import Conflict, NotFound
from apps.plans.schemas import parse_limit
from apps.plans.services import portal_for_agent

from . import files, services
from .choices import ExportStatus
from .schemas import parse_export, render_export
from .selectors import export_file_ready, export_get_for_agent, export_list_for_agent

CONTENT_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}


class FileGone(NotFound):
    """The export's file was removed after its retention period."""

    code = "gone"
    status = 410
    default_message = "The export's file was removed after its retention period."


def _agent(request):
    agent = authenticate_agent(request)
    check_rate(agent)
    return agent


@json_endpoint("GET", "POST")
def exports(request):
    agent = _agent(request)
    if request.method == "GET":
        rows = export_list_for_agent(agent=agent, limit=parse_limit(request.GET.get("limit")))
        return {"exports": [render_export(e) for e in rows]}
    req = parse_export(parse_json_body(request), header_key=request.headers.get("Idempotency-Key"))
    submission = services.export_submit(
        agent=agent, portal=portal_for_agent(agent=agent, slug=req.portal), method=req.method, select=req.select,
        filter_=req.filter, order=req.order, fmt=req.format, reason=req.reason,
        idempotency_key=req.idempotency_key, request_hash=req.request_hash,
    )
    export = export_get_for_agent(agent=agent, export_id=submission.export.pk)
    if submission.replayed:
        return render_export(export), 200, {"Idempotent-Replayed": "true"}
    return render_export(export), 201, {"Location": f"/api/v1/exports/{export.pk}"}


@json_endpoint("GET")
def export_detail(request, export_id):
    agent = _agent(request)
    return render_export(export_get_for_agent(agent=agent, export_id=export_id))


@json_endpoint("POST")
def export_cancel(request, export_id):
    agent = _agent(request)
    export = export_get_for_agent(agent=agent, export_id=export_id)
    services.export_cancel(export_id=export.pk, agent=agent)
    return render_export(export_get_for_agent(agent=agent, export_id=export.pk))


@json_endpoint("GET")
def export_file(request, export_id):
    agent = _agent(request)
    export = export_get_for_agent(agent=agent, export_id=export_id)
    if export.file_removed_at is not None:
        raise FileGone()
    if not export_file_ready(export):
        raise Conflict(f"The export is {export.status}; its file is ready once it has succeeded.",
                       status=export.status) if export.status != ExportStatus.SUCCEEDED else FileGone()
    handle = open(files.export_path(export), "rb")  # noqa: SIM115 - FileResponse closes it
    response = FileResponse(handle, content_type=CONTENT_TYPES[export.format], as_attachment=True,
                            filename=f"{export.method}-{export.pk}.{export.format}")
    return response
