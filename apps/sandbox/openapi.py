"""`rest.documentation.openapi` (short name `documentation`): the OpenAPI document of the REST 3.0
methods this portal exposes (api-reference/rest-v3.md#openapi): `paths` per method,
`components.schemas` per object. The answer is the document itself, without `result`/`time`."""

from .methods import TASK_V3_FIELDS, Ctx, Outcome

_TYPES = {"int": {"type": "integer"}, "string": {"type": "string"}}


def _task_schema() -> dict:
    properties = {}
    for name, (ftype, _, _, multiple) in TASK_V3_FIELDS.items():
        schema = dict(_TYPES.get(ftype, {"type": "string"}))
        properties[name] = {"type": "array", "items": schema} if multiple else schema
    return {"type": "object", "properties": properties}


def openapi_document(ctx: Ctx, params: dict) -> Outcome:
    from .registry import V3_METHODS

    paths, tags = {}, set()
    for name, spec in sorted(V3_METHODS.items()):
        if spec.handler is None and not spec.is_batch:
            continue
        tag = name.split(".")[0]
        tags.add(tag)
        paths[f"/{name}"] = {"post": {
            "tags": [tag], "operationId": name,
            "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": {"200": {"description": "OK"}},
            **({"x-scope": spec.scopes[0]} if spec.scopes else {}),
        }}
    return Outcome({
        "openapi": "3.0.0",
        "info": {"title": "Bitrix24 REST V3 API", "version": "1.0.0"},
        "tags": [{"name": tag, "description": f"{tag} module methods"} for tag in sorted(tags)],
        "paths": paths,
        "components": {"schemas": {"TaskDto": _task_schema()}},
    }, raw=True)
