"""The error codes the OpenAPI document lists are read from the exception hierarchy."""

import importlib
import pkgutil

import apps
from apps.core.exceptions import ApplicationError, error_codes
from apps.plans.openapi import openapi_document, served_error_codes


def _import_every_app_module():
    for module in pkgutil.walk_packages(apps.__path__, "apps."):
        if ".migrations" in module.name or module.name.endswith(".tests"):
            continue
        importlib.import_module(module.name)


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_application_error_code_is_in_the_document():
    listed = openapi_document()["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
    _import_every_app_module()
    codes = {cls.code for cls in _subclasses(ApplicationError)}
    assert codes == set(listed) == set(served_error_codes())
    assert {"invalid_request", "not_found", "method_not_allowed", "internal_error", "rate_limited",
            "idempotency_mismatch", "unsupported_media_type"} <= codes


def test_a_new_subclass_is_registered_with_its_status():
    from apps.core import exceptions

    try:
        class TeapotError(ApplicationError):
            code = "test_teapot"
            status = 418

        assert error_codes()["test_teapot"] == (418,)
    finally:
        exceptions._REGISTRY.pop("test_teapot", None)
