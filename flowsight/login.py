"""Browser sign-in: a form that takes a read (or admin) token and keeps it in an HttpOnly cookie,
so dashboards on shared screens work without putting the token in a URL."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from flowsight.auth import COOKIE, TokenSet, form_field, safe_next

MAX_FORM_BYTES = 8192
COOKIE_SECONDS = 12 * 3600

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>flowsight: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/dashboard.css"></head>
<body><main class="login">
<h1>flowsight</h1>
<form method="post" action="/login">
<input type="hidden" name="next" value="{next}">
<label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button>
{error}
</form>
</main></body></html>
"""


def router(tokens: TokenSet | None) -> APIRouter:
    api = APIRouter(include_in_schema=False)

    @api.get("/login")
    def login_page(next: str = "/") -> HTMLResponse:
        return HTMLResponse(PAGE.format(next=escape(safe_next(next)), error=""))

    @api.post("/login")
    async def login(request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                return HTMLResponse("form too large", status_code=413)
        token = form_field(body, "token") or ""
        target = safe_next(form_field(body, "next"))
        principal = tokens.match(token) if tokens is not None and token else None
        if tokens is not None and (principal is None or not principal.may("read")):
            page = PAGE.format(
                next=escape(target), error='<p class="error" role="alert">That token cannot read.</p>'
            )
            return HTMLResponse(page, status_code=401)
        response = RedirectResponse(target, status_code=303)
        if tokens is not None:
            secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
            response.set_cookie(
                COOKIE, token, max_age=COOKIE_SECONDS, httponly=True, samesite="strict", secure=secure
            )
        return response

    @api.get("/logout")
    def logout() -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    return api
