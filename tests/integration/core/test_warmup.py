"""The web process's warm-up imports what the first requests would otherwise pay for."""

import sys

from django.urls.resolvers import _get_cached_resolver

from apps.core.warmup import warm_web_process


def test_warm_up_loads_the_url_configuration(monkeypatch):
    _get_cached_resolver.cache_clear()
    for module in ("controlplane.urls", "apps.exports.urls"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    try:
        warm_web_process()
        assert "apps.exports.urls" in sys.modules  # reached only through the URL configuration
        assert _get_cached_resolver.cache_info().currsize == 1
    finally:
        _get_cached_resolver.cache_clear()


def test_warm_up_puts_what_start_up_made_out_of_the_collectors_reach():
    """A full collection then scans only what requests made: with 500 long polls held, the
    pauses of collecting start-up's objects were the pending submits' p99 (bench/README.md)."""
    import gc

    gc.unfreeze()
    try:
        assert gc.get_freeze_count() == 0
        warm_web_process()
        assert gc.get_freeze_count() > 10_000  # modules, settings, URL patterns
    finally:
        gc.unfreeze()
