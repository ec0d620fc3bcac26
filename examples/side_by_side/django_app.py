"""The Django app of the side-by-side example: a one-file Django project.

Django reads ``SCRIPT_NAME`` itself (its WSGI handler sets the script
prefix), so ``reverse()`` and ``redirect()`` carry the mount prefix.
"""
from __future__ import annotations

from typing import Any

import django
from django.conf import settings
from django.http import HttpResponse, HttpResponseNotFound
from django.shortcuts import redirect
from django.urls import path, reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST


@require_GET
def index(request: Any) -> HttpResponse:
    return HttpResponse(f"Django here. form at {reverse('form')}\n", content_type="text/plain")


@csrf_exempt  # the example posts without a CSRF token; a real site keeps the check
@require_POST
def form(request: Any) -> HttpResponse:
    return HttpResponse(f"Django got name={request.POST.get('name', '')}\n", content_type="text/plain")


def go(request: Any) -> HttpResponse:
    return redirect("index")


def not_found(request: Any, exception: Exception) -> HttpResponse:
    return HttpResponseNotFound("Django says: no such page\n", content_type="text/plain")


urlpatterns = [
    path("", index, name="index"),
    path("form", form, name="form"),
    path("go", go, name="go"),
]
handler404 = not_found


def make_app() -> Any:
    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="side-by-side-example-not-secret",
            ROOT_URLCONF=__name__,
            ALLOWED_HOSTS=["127.0.0.1", "localhost", "testserver", "[::1]"],
            MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
            INSTALLED_APPS=[],
            USE_TZ=True,
        )
        django.setup()
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def app_factory(global_conf: dict[str, Any], **local_conf: str) -> Any:
    return make_app()
