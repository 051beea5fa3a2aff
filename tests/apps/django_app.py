"""A single-file Django project with the routes the enforcement differential test protects.

Run: python3 django_app.py PORT (binds 127.0.0.1 only). Serves with `runserver --noreload`,
Django's own development server, so its request handling and its URL resolver decide what
reaches a view.

Protected (Latch locks them): GET docs/<int:id>/edit and POST docs/<int:id>/save (CSRF
exempt, as an API endpoint would be). Unprotected: GET / and GET /handled, the JSON list of
every protected view run, which the test reads from this port directly.
"""

import os
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pydeps"))

from django.conf import settings  # noqa: E402

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    SECRET_KEY="differential-test-only",
    # The middleware `startproject` enables that applies without apps or a database.
    MIDDLEWARE=[
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ],
    INSTALLED_APPS=[],
    DATABASES={},
    LOGGING_CONFIG=None,
)

from django.http import HttpResponse, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402
from django.views.decorators.http import require_GET, require_POST  # noqa: E402

handled = []
lock = threading.Lock()


def record(request, handler, doc_id):
    entry = {
        "handler": handler,
        "id": doc_id,
        "user": request.headers.get("X-Latch-User"),
        "probe": request.headers.get("X-Diff-Probe"),
        "path": request.path,
    }
    with lock:
        handled.append(entry)


def index(request):
    return HttpResponse("django app\n")


@require_GET
def edit(request, id):
    record(request, "edit", id)
    return HttpResponse(f"<html><head><title>edit {id}</title></head><body>edit {id}</body></html>")


@csrf_exempt
@require_POST
def save(request, id):
    record(request, "save", id)
    return HttpResponse(f"saved {id}\n")


def list_handled(request):
    with lock:
        return JsonResponse(list(handled), safe=False)


urlpatterns = [
    path("", index),
    path("docs/<int:id>/edit", edit),
    path("docs/<int:id>/save", save),
    path("handled", list_handled),
]

if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line(
        [sys.argv[0], "runserver", "--noreload", "--skip-checks", f"127.0.0.1:{int(sys.argv[1])}"]
    )
