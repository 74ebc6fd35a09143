"""The methods the sandbox portal answers: lower-case name -> `MethodSpec`, `V2_METHODS` for
`/rest/` and `V3_METHODS` for `/rest/api/`. Scopes as printed on each method page
(`methods.csv`, `methods_rest3.csv`): v2 `tasks.task.*` need `task`, REST 3.0 ones `tasks`."""

from . import disk, events, imbot, openapi, scrum, system, task_comments, workspace
from .crm import CRM_ENTITIES, crm_handlers
from .crm_items import item_handlers
from .methods import (
    MethodSpec,
    _param,
    tasks_v2_add,
    tasks_v2_delete,
    tasks_v2_get,
    tasks_v2_list,
    tasks_v2_update,
    tasks_v3_add,
    tasks_v3_delete,
    tasks_v3_field_list,
    tasks_v3_get,
    tasks_v3_list,
    tasks_v3_update,
)
from .tokens import ALL_SCOPES  # noqa: F401  (re-exported: the scopes the portal knows)

USER_SCOPES = ("user", "user_brief", "user_basic")
SONET_SCOPES = ("sonet", "sonet_group")  # the method pages say `sonet`, the scope table `sonet_group` (FACTS §12)


def _task_events(handler, verb: str):
    """Wrap a tasks.task.* handler so the change is told to bound event handlers."""

    def run(ctx, params):
        outcome = handler(ctx, params)
        result = outcome.result if isinstance(outcome.result, dict) else {}
        task = result.get("task") if isinstance(result.get("task"), dict) else result.get("item")
        if verb == "add" and isinstance(task, dict):
            task_id = task.get("id")
        else:
            task_id = _param(params, "taskId", "id")
        if task_id is not None and str(task_id).isdigit():
            events.record_changed(ctx, "task", verb, int(task_id))
        return outcome

    return run


def _build_v2() -> dict[str, MethodSpec]:
    specs = [
        MethodSpec("batch", ("basic",), is_batch=True),
        MethodSpec("server.time", ("basic",), system.server_time),
        MethodSpec("scope", ("basic",), system.scope),
        MethodSpec("methods", ("basic",), system.methods),
        MethodSpec("method.get", ("basic",), system.method_get),
        MethodSpec("feature.get", ("basic",), system.feature_get),
        MethodSpec("app.info", ("basic",), system.app_info),
        MethodSpec("profile", ("basic",), system.profile),
        MethodSpec("event.bind", ("basic",), events.event_bind, is_write=True, app_only=True),
        MethodSpec("event.unbind", ("basic",), events.event_unbind, is_write=True, app_only=True),
        MethodSpec("event.get", ("basic",), events.event_get, app_only=True),
        MethodSpec("events", ("basic",), events.events_list),
        MethodSpec("event.offline.get", ("basic",), events.offline_get, is_write=True),
        MethodSpec("event.offline.clear", ("basic",), events.offline_clear, is_write=True),
        MethodSpec("event.offline.error", ("basic",), events.offline_error, is_write=True),
        MethodSpec("event.offline.list", ("basic",), events.offline_list),
        MethodSpec("imbot.register", ("imbot",), imbot.imbot_register, is_write=True, app_only=True),
        MethodSpec("imbot.command.register", ("imbot",), imbot.imbot_command_register, is_write=True,
                   app_only=True),
        MethodSpec("imbot.command.answer", ("imbot",), imbot.imbot_command_answer, is_write=True, app_only=True),
        MethodSpec("im.chat.add", ("im",), imbot.im_chat_add, is_write=True),
        MethodSpec("im.message.add", ("im",), imbot.im_message_add, is_write=True),
        MethodSpec("im.notify.personal.add", ("im",), workspace.notify_personal_add, is_write=True),
        MethodSpec("im.notify.system.add", ("im",), workspace.notify_system_add, is_write=True),
        MethodSpec("task.checklistitem.add", ("task",), workspace.checklistitem_add, is_write=True,
                   args=("TASKID", "FIELDS")),
        MethodSpec("task.checklistitem.get", ("task",), workspace.checklistitem_get, args=("TASKID", "ITEMID")),
        MethodSpec("task.checklistitem.getlist", ("task",), workspace.checklistitem_getlist,
                   args=("TASKID", "ORDER")),
        MethodSpec("task.checklistitem.complete", ("task",), workspace.checklistitem_complete, is_write=True,
                   args=("TASKID", "ITEMID")),
        MethodSpec("calendar.event.add", ("calendar",), workspace.calendar_event_add, is_write=True),
        MethodSpec("calendar.event.getbyid", ("calendar",), workspace.calendar_event_getbyid),
        MethodSpec("log.blogpost.add", ("log",), workspace.blogpost_add, is_write=True),
        MethodSpec("log.blogpost.get", ("log",), workspace.blogpost_get),
        MethodSpec("sonet_group.create", SONET_SCOPES, workspace.sonet_group_create, is_write=True),
        MethodSpec("sonet_group.get", SONET_SCOPES, workspace.sonet_group_get),
        MethodSpec("sonet_group.update", SONET_SCOPES, workspace.sonet_group_update, is_write=True),
        MethodSpec("sonet_group.user.add", SONET_SCOPES, workspace.sonet_group_user_add, is_write=True),
        MethodSpec("sonet_group.user.get", SONET_SCOPES, workspace.sonet_group_user_get),
        MethodSpec("bizproc.workflow.template.list", ("bizproc",), workspace.template_list),
        MethodSpec("bizproc.workflow.start", ("bizproc",), workspace.workflow_start, is_write=True),
        MethodSpec("bizproc.workflow.instances", ("bizproc",), workspace.workflow_instances),
        MethodSpec("disk.storage.getlist", ("disk",), disk.storage_getlist),
        MethodSpec("disk.folder.get", ("disk",), disk.folder_get),
        MethodSpec("disk.folder.uploadfile", ("disk",), disk.folder_uploadfile, is_write=True),
        MethodSpec("disk.file.get", ("disk",), disk.file_get),
        MethodSpec("disk.attachedobject.get", ("disk",), disk.attached_object_get),
        MethodSpec("tasks.task.files.attach", ("task",), disk.task_files_attach, is_write=True),
        MethodSpec("tasks.api.scrum.backlog.get", ("task",), scrum.backlog_get),
        MethodSpec("tasks.api.scrum.epic.add", ("task",), scrum.epic_add, is_write=True),
        MethodSpec("tasks.api.scrum.epic.list", ("task",), scrum.epic_list),
        MethodSpec("tasks.api.scrum.sprint.add", ("task",), scrum.sprint_add, is_write=True),
        MethodSpec("tasks.api.scrum.sprint.get", ("task",), scrum.sprint_get),
        MethodSpec("tasks.api.scrum.sprint.start", ("task",), scrum.sprint_start, is_write=True),
        MethodSpec("tasks.api.scrum.task.get", ("task",), scrum.task_get),
        MethodSpec("tasks.api.scrum.task.update", ("task",), scrum.task_update, is_write=True),
        MethodSpec("tasks.api.scrum.kanban.getstages", ("task",), scrum.kanban_get_stages),
        MethodSpec("tasks.api.scrum.kanban.addtask", ("task",), scrum.kanban_add_task, is_write=True),
        MethodSpec("user.current", USER_SCOPES, system.user_current),
        MethodSpec("department.get", ("department",), system.department_get),
        MethodSpec("biconnector.connector.get", ("biconnector",), system.biconnector_connector_get),
        MethodSpec("tasks.task.add", ("task",), _task_events(tasks_v2_add, "add"), is_write=True),
        MethodSpec("tasks.task.get", ("task",), tasks_v2_get),
        MethodSpec("tasks.task.list", ("task",), tasks_v2_list),
        MethodSpec("tasks.task.update", ("task",), _task_events(tasks_v2_update, "update"), is_write=True),
        MethodSpec("tasks.task.delete", ("task",), _task_events(tasks_v2_delete, "delete"), is_write=True),
        MethodSpec("task.commentitem.add", ("task",), task_comments.commentitem_add, is_write=True,
                   args=("TASKID", "FIELDS")),
        MethodSpec("task.commentitem.get", ("task",), task_comments.commentitem_get, args=("TASKID", "ITEMID")),
        MethodSpec("task.commentitem.getlist", ("task",), task_comments.commentitem_getlist,
                   args=("TASKID", "ORDER", "FILTER")),
        MethodSpec("task.commentitem.delete", ("task",), task_comments.commentitem_delete, is_write=True,
                   args=("TASKID", "ITEMID")),
    ]
    methods = {spec.name: spec for spec in specs}
    for entity in CRM_ENTITIES:
        for verb, handler in crm_handlers(entity, on_change=events.record_changed).items():
            name = f"crm.{entity}.{verb}"
            methods[name] = MethodSpec(name, ("crm",), handler, is_write=verb in ("add", "update", "delete"))
    for verb, handler in item_handlers(on_change=events.record_changed).items():
        name = f"crm.item.{verb}"
        methods[name] = MethodSpec(name, ("crm",), handler, is_write=verb in ("add", "update", "delete"))
    return methods


V2_METHODS: dict[str, MethodSpec] = _build_v2()

V3_METHODS: dict[str, MethodSpec] = {
    "batch": MethodSpec("batch", ("basic",), is_batch=True),
    "rest.scope.list": MethodSpec("rest.scope.list", ("basic",), system.rest_scope_list),
    "rest.documentation.openapi": MethodSpec("rest.documentation.openapi", ("basic",), openapi.openapi_document),
    "documentation": MethodSpec("documentation", ("basic",), openapi.openapi_document),
    "tasks.task.field.list": MethodSpec("tasks.task.field.list", ("tasks",), tasks_v3_field_list),
    "tasks.task.add": MethodSpec("tasks.task.add", ("tasks",), _task_events(tasks_v3_add, "add"), is_write=True),
    "tasks.task.get": MethodSpec("tasks.task.get", ("tasks",), tasks_v3_get),
    "tasks.task.list": MethodSpec("tasks.task.list", ("tasks",), tasks_v3_list),
    "tasks.task.update": MethodSpec("tasks.task.update", ("tasks",), _task_events(tasks_v3_update, "update"),
                                    is_write=True),
    "tasks.task.delete": MethodSpec("tasks.task.delete", ("tasks",), _task_events(tasks_v3_delete, "delete"),
                                    is_write=True),
}
