"""A Django project that takes its user from Latch, with Django's own RemoteUserMiddleware.

Run: python3 django_remote_user.py PORT DB_PATH (binds 127.0.0.1 only). Serves with
`runserver --noreload`. DB_PATH is a fresh SQLite file: the auth and session tables are
migrated into it at start.

This is the pattern docs/identity.md describes: Latch signs the user in (`auth.require =
"all"`), and the app trusts `X-Latch-User`, which only Latch can set, because Latch removes
every client header that reads as `X-Latch-*`. `LatchUserMiddleware` is the whole integration.

Routes:
- GET /whoami: JSON `{user, authenticated, session_user}`: `request.user` as Django's auth
  sees it, and the user id the session cookie holds (as Django would have logged in with it).
- GET docs/<int:id>/edit: the editor page Latch locks.
- POST docs/<int:id>/save: saves as `request.user` (CSRF exempt, as an API endpoint would be).
- GET /saves: every save made, `{id, user}` (read from this port directly).
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
    SECRET_KEY="remote-user-test-only",
    INSTALLED_APPS=[
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
    ],
    MIDDLEWARE=[
        "django.middleware.security.SecurityMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "__main__.LatchUserMiddleware",
    ],
    AUTHENTICATION_BACKENDS=["django.contrib.auth.backends.RemoteUserBackend"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": sys.argv[2]}},
    DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    USE_TZ=True,
    LOGGING_CONFIG=None,
)

import django  # noqa: E402

django.setup()

from django.contrib.auth import SESSION_KEY, get_user_model  # noqa: E402
from django.contrib.auth.middleware import RemoteUserMiddleware  # noqa: E402
from django.http import HttpResponse, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402
from django.views.decorators.http import require_GET, require_POST  # noqa: E402


class LatchUserMiddleware(RemoteUserMiddleware):
    """The user is the one Latch names in `X-Latch-User` (WSGI: HTTP_X_LATCH_USER).

    Django's RemoteUserMiddleware logs that user in (creating them on first sight), switches
    the session to another user when the header names someone else, and logs the session out
    when the header is absent, so the app's user and Latch's can never differ.
    """

    header = "HTTP_X_LATCH_USER"


saves = []
lock = threading.Lock()


@require_GET
def whoami(request):
    user = request.user
    return JsonResponse(
        {
            "user": user.get_username() if user.is_authenticated else None,
            "authenticated": user.is_authenticated,
            "session_user": _session_username(request),
        }
    )


def _session_username(request):
    pk = request.session.get(SESSION_KEY)
    if pk is None:
        return None
    found = get_user_model().objects.filter(pk=pk).first()
    return found.get_username() if found else None


@require_GET
def edit(request, id):
    who = request.user.get_username() if request.user.is_authenticated else "nobody"
    return HttpResponse(
        f"<html><head><title>edit {id}</title></head><body>{who} edits {id}</body></html>"
    )


@csrf_exempt
@require_POST
def save(request, id):
    if not request.user.is_authenticated:
        return HttpResponse("sign in first\n", status=403)
    with lock:
        saves.append({"id": id, "user": request.user.get_username()})
    return HttpResponse(f"saved {id}\n")


def list_saves(request):
    with lock:
        return JsonResponse(list(saves), safe=False)


def index(request):
    return HttpResponse("django remote-user app\n")


urlpatterns = [
    path("", index),
    path("whoami", whoami),
    path("docs/<int:id>/edit", edit),
    path("docs/<int:id>/save", save),
    path("saves", list_saves),
]

if __name__ == "__main__":
    from django.core.management import call_command, execute_from_command_line

    call_command("migrate", verbosity=0, interactive=False)
    execute_from_command_line(
        [sys.argv[0], "runserver", "--noreload", "--skip-checks", f"127.0.0.1:{int(sys.argv[1])}"]
    )
