"""Security headers on every response, and the API documentation page they allow.

Pages of this service (the admin cockpit, the API documentation) load scripts
and styles only from files the service serves itself: no inline script or
style, no framing by other sites, no referrer sent elsewhere, no content-type
sniffing. Swagger UI works under this policy once the script that starts it
is a file of its own. A response that sets its own header (the stored image files, with
their stricter sandbox policy) keeps it.
"""

from __future__ import annotations

import json

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class SecurityHeadersMiddleware:
    """Adds `SECURITY_HEADERS` to every HTTP response that lacks them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def swagger_page(*, title: str, assets: str, init_url: str) -> str:
    """The API documentation page: no inline script, every file from ``assets``."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" href="{assets}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{init_url}"></script>
</body>
</html>
"""


def swagger_init_script(*, openapi_url: str) -> str:
    """The script that starts Swagger UI, served as a file of its own."""
    options = {
        "url": openapi_url,
        "dom_id": "#swagger-ui",
        "layout": "BaseLayout",
        "deepLinking": True,
        "validatorUrl": None,  # no badge fetched from the internet
    }
    return (
        f"window.ui = SwaggerUIBundle(Object.assign({json.dumps(options)}, "
        "{presets: [SwaggerUIBundle.presets.apis]}));\n"
    )
