"""Who may reach `minigpt-tui serve`: the user's own browser, on the address served, with the server's token.

As Jupyter does it: a request names a host of this server (else a page of another site could reach it under a
name of its own, DNS rebinding), comes from no other page (the browser's Origin, sent with every WebSocket), and
carries the secret token that `serve` prints in its URL. The first page load takes the token from the URL, keeps
it in a cookie for the browser session (so the page's own WebSocket and assets are admitted) and drops it from
the address bar. Everything else is refused with 403, before any app process starts.
"""

import hmac
import sys
from urllib.parse import quote

from aiohttp import web
from yarl import URL

from minigpt_tui.serve import LOOPBACK


class Access:
    """The checks every request to the server passes, as aiohttp middleware (`Access.middleware`)."""

    def __init__(self, token: str, host: str) -> None:
        self.token = token
        # Served on loopback only (the default), a request must name it: a page of a site that renamed itself to
        # 127.0.0.1 (DNS rebinding) names its own. Elsewhere the names a browser may use cannot be known.
        self.names = LOOPBACK if host in LOOPBACK else None

    def url(self, host: str, port: int) -> str:
        """The address to open, token included."""
        where = f"[{host}]" if ":" in host else host
        return f"http://{where}:{port}/?token={quote(self.token, safe='')}"

    @web.middleware
    async def middleware(self, request: web.Request, handler) -> web.StreamResponse:
        if problem := self.refusal(request):
            # The path as sent (percent-encoded, without the query and its token); the headers quoted by repr:
            # nothing a client sends reaches the terminal as control characters.
            where = f"{request.method} {request.url.raw_path}"
            print(f"minigpt-tui serve: refused {where}: {problem}", file=sys.stderr, flush=True)
            return web.Response(status=403, text=f"minigpt-tui serve: {problem}\n")
        given = request.query.get("token")
        if given is not None and request.path == "/":  # the URL the server printed: keep the token, hide it
            response = web.Response(
                status=302, headers={"Location": str(request.rel_url.without_query_params("token"))}
            )
            response.set_cookie(cookie_name(request), given, path="/", httponly=True, samesite="Strict")
            return response
        return await handler(request)

    def refusal(self, request: web.Request) -> str | None:
        """Why `request` is refused, or None."""
        if self.names is not None and (request.url.host or "").lower() not in self.names:
            return f"the Host {request.host!r} is not an address of this server"
        origin = request.headers.get("Origin")
        if origin is not None and not same_origin(origin, request.url):
            return f"requests from other pages (Origin {origin!r}) are not admitted"
        given = request.query.get("token") or request.cookies.get(cookie_name(request), "")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            what = "a wrong token" if given else "no token"
            return f"{what}; open the address `minigpt-tui serve` printed (…/?token=…)"
        return None


def same_origin(origin: str, url: URL) -> bool:
    try:
        return URL(origin).origin() == url.origin()
    except ValueError:  # "null", or no URL at all
        return False


def cookie_name(request: web.Request) -> str:
    # Cookies are kept per host name, not per port: servers on two ports of localhost each keep their own.
    return f"minigpt-tui-token-{request.url.port}"
