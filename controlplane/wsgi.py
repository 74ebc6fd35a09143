import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
application = get_wsgi_application()

from apps.core.handlers import WSGIRouter  # noqa: E402  (after the settings, like the import below)

application = WSGIRouter(application)

from apps.core.warmup import warm_web_process  # noqa: E402  (needs the settings loaded above)

warm_web_process()
