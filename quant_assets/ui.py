"""The Dagster UI for one machine: Dagster's webserver app behind two guards, served by uvicorn, with the daemon
beside it (what `dagster dev` runs, minus the holes).

Dagster's webserver answers any page that reaches it. Its `/graphql` takes mutations over GET as well as POST,
and a POST whose body is form-encoded or plain text (a request a foreign page may send without asking first) is
read from the URL's query string, so a page on any site open in the same browser can launch runs; and it answers
any `Host`, so a foreign name resolved to 127.0.0.1 (DNS rebinding) can read it too. The guards:

- `TrustedHostMiddleware` (Starlette): a request whose `Host` is not one this server answers (127.0.0.1,
  localhost, the host it listens on, the trusted hosts) gets 400. It compares names, not ports: a browser puts in
  `Host` the name of the page's address, and a foreign name is what DNS rebinding needs.
- `SameOrigin`: a browser's request from another origin (scheme, host and port) gets 403: on `/graphql` (GET,
  POST and the subscriptions' websocket) and on any request that is not GET, HEAD or OPTIONS (the asset report
  endpoints are POSTs). A browser says where a request comes from in `Origin` (every POST and websocket),
  `Sec-Fetch-Site` or `Referer`; a client that sends none of them (curl, Dagster's GraphQL client, the tests) is
  not a browser page and passes. A mutation sent by GET gets 405 whatever its origin: Dagster's UI sends every
  query and mutation by POST and subscriptions over the websocket, so only a link or an image would use GET.

One more difference, for truthful backfill pages: a backfill launched from a job's page (*Materialize all* on
`ingest_us_equities`) is sent by Dagster's UI as a *job* backfill, whose page gives every session of a single-run
range the status of the run (one failed session: "Failed 4" for four sessions of which two were built).
`AssetBackfills` launches it as the *asset* backfill of the same assets, partitions, tags and config (what the
asset and group pages send), whose page counts each asset's partitions: materialized, failed, in progress. A
re-execution of a job backfill (`fromFailure`, chosen steps) stays a job backfill.

`serve` starts what `dagster dev` starts: the code servers (shared through a temporary workspace file), the daemon
as a subprocess, and the guarded webserver in this process; it stops them on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOCAL_HOSTS = ("127.0.0.1", "localhost")
GRAPHQL_PATH = "/graphql"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LARGEST_REWRITTEN_BODY = 4 * 2**20  # a launch of 10 years of sessions by name is ~40 KB; larger passes as sent
DAEMON_STOP_SECONDS = 60  # as `dagster dev` waits for its children
logger = logging.getLogger("quant_assets.ui")


def _bracketed(host: str) -> str:
    """A host as it appears in a URL or a Host header: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def split_host(entry: str) -> tuple[str, str | None]:
    """(host, port or None) of a trusted-host entry (`name`, `name:port`, `[v6]:port`), lower case; a pattern or
    a URL raises ValueError naming the entry."""
    text = entry.strip().lower()
    if not text or any(c in text for c in "*/@ "):
        raise ValueError(f"trusted host {entry!r} must be a host name or host:port (no pattern, scheme or path)")
    if text.startswith("["):
        host, _, rest = text.partition("]")
        return host + "]", rest.removeprefix(":") or None
    if text.count(":") == 1:
        host, port = text.split(":")
        if not port.isdigit():
            raise ValueError(f"trusted host {entry!r}: {port!r} is not a port")
        return host, port
    return _bracketed(text), None


def allowed_hosts(host: str, trusted: Iterable[str] = ()) -> list[str]:
    """The host names this server answers: 127.0.0.1, localhost, the host it listens on and the trusted hosts."""
    names = [*LOCAL_HOSTS, _bracketed(host.lower()), *(split_host(t)[0] for t in trusted)]
    return list(dict.fromkeys(names))


def served_origins(host: str, port: int, trusted: Iterable[str] = ()) -> frozenset[str]:
    """The origins of this server's own pages: http://127.0.0.1:PORT, http://localhost:PORT and http://HOST:PORT,
    and for each trusted host (a proxy's name) http and https, on its port if it has one, else the default."""
    origins = {f"http://{name}:{port}" for name in (*LOCAL_HOSTS, _bracketed(host.lower()))}
    for entry in trusted:
        name, trusted_port = split_host(entry)
        where = f"{name}:{trusted_port}" if trusted_port else name
        origins |= {f"http://{where}", f"https://{where}"}
    return frozenset(origins)


def _origin_of(url: str) -> str:
    """scheme://host[:port] of a URL, lower case, as a browser writes an `Origin`."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}".lower()


def foreign(headers: Headers, origins: Collection[str]) -> str | None:
    """Where a request from a page of another origin comes from, in words, or None when it comes from one of
    `origins` (or says nothing: not a browser)."""
    if (origin := headers.get("origin")) is not None:
        return None if origin.lower() in origins else f"a page of {origin} (Origin)"
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):  # none: typed in the address bar, a bookmark
        return f"a {site} page (Sec-Fetch-Site)"
    if (referer := headers.get("referer")) and _origin_of(referer) not in origins:
        return f"a page of {_origin_of(referer)} (Referer)"
    return None


def is_mutation(query: str) -> bool:
    """Whether a GraphQL document holds a mutation (a document that does not parse is left to Dagster's 400)."""
    from graphql import GraphQLError, OperationType, parse
    from graphql.language import OperationDefinitionNode

    try:
        document = parse(query)
    except GraphQLError:
        return False
    return any(
        isinstance(d, OperationDefinitionNode) and d.operation == OperationType.MUTATION for d in document.definitions
    )


class SameOrigin:
    """ASGI middleware: refuse (403) a browser's request from a page of another origin on `/graphql` (HTTP and
    websocket) and on every request that is not GET, HEAD or OPTIONS; refuse (405) a mutation sent by GET."""

    def __init__(self, app: ASGIApp, origins: Collection[str]):
        self.app = app
        self.origins = frozenset(o.lower() for o in origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        graphql = scope["path"] == GRAPHQL_PATH
        method = scope.get("method", "GET")
        if graphql or scope["type"] == "websocket" or method not in SAFE_METHODS:
            if (why := foreign(Headers(scope=scope), self.origins)) is not None:
                served = ", ".join(sorted(self.origins))
                message = (
                    f"refused: a request from {why}; this Dagster UI answers only its own pages ({served}); "
                    "a proxy's name is added with `quant-assets ui --trusted-host`"
                )
                await _refuse(scope, receive, send, 403, message)
                return
        if graphql and scope["type"] == "http" and method == "GET":
            queries = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("query", [])
            if any(is_mutation(q) for q in queries):
                message = "refused: a GraphQL mutation must be sent by POST, not GET"
                await _refuse(scope, receive, send, 405, message, {"Allow": "POST"})
                return
        await self.app(scope, receive, send)


def as_asset_backfill(params: Any) -> dict | None:
    """The asset backfill equivalent to a job backfill's `LaunchBackfillParams` (its assets, partitions, tags,
    title, description and run config, without the job's partition set), or None when `params` is not a job
    backfill of chosen assets and partitions, or is a re-execution (`fromFailure`, `reexecutionSteps`), which
    only a job backfill does."""
    if not isinstance(params, dict) or not isinstance(params.get("selector"), dict):
        return None
    if not params.get("assetSelection") or params.get("fromFailure") or params.get("reexecutionSteps"):
        return None
    if not (params.get("partitionNames") or params.get("allPartitions")):
        return None
    return {key: value for key, value in params.items() if key not in ("selector", "forceSynchronousSubmission")}


def launch_arguments(query: str) -> list[str]:
    """The names of the variables a GraphQL document passes as `backfillParams` to `launchPartitionBackfill`."""
    from graphql import GraphQLError, parse
    from graphql.language import FieldNode, OperationDefinitionNode, VariableNode

    try:
        document = parse(query)
    except GraphQLError:
        return []
    names = []
    for definition in document.definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        for field in definition.selection_set.selections:
            if isinstance(field, FieldNode) and field.name.value == "launchPartitionBackfill":
                names += [
                    a.value.name.value
                    for a in field.arguments
                    if a.name.value == "backfillParams" and isinstance(a.value, VariableNode)
                ]
    return names


def rewritten_launch(body: bytes) -> tuple[bytes, list[str]] | None:
    """A GraphQL request body (JSON) whose job backfill launch is sent as the equivalent asset backfill, with the
    partition sets it replaced, or None when it launches no job backfill of assets (then it is sent as it is)."""
    try:
        request = json.loads(body)
    except ValueError:
        return None
    if not isinstance(request, dict) or "launchPartitionBackfill" not in str(request.get("query", "")):
        return None
    variables = request.get("variables")
    if not isinstance(variables, dict):
        return None
    replaced = []
    for name in launch_arguments(request["query"]):
        params = variables.get(name)
        if (asset_backfill := as_asset_backfill(params)) is not None:
            replaced.append(str(params["selector"].get("partitionSetName")))
            variables[name] = asset_backfill
    return (json.dumps(request).encode(), replaced) if replaced else None


class AssetBackfills:
    """ASGI middleware: a POST to `/graphql` that launches a job backfill of chosen assets and partitions (what a
    job page's launch dialog sends) launches the same assets and partitions as an asset backfill."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        posted = scope["type"] == "http" and scope["path"] == GRAPHQL_PATH and scope.get("method") == "POST"
        if not posted or "json" not in Headers(scope=scope).get("content-type", ""):
            await self.app(scope, receive, send)
            return
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body") or size > LARGEST_REWRITTEN_BODY:
                break
        complete = messages[-1]["type"] == "http.request" and not messages[-1].get("more_body")
        rewritten = rewritten_launch(b"".join(m.get("body", b"") for m in messages)) if complete else None
        if rewritten is not None:
            body, replaced = rewritten
            logger.info("job backfill of %s launched as the asset backfill of the same assets", ", ".join(replaced))
            messages = [{"type": "http.request", "body": body, "more_body": False}]
            headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
            scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        pending = list(messages)

        async def replay() -> dict:
            return pending.pop(0) if pending else await receive()

        await self.app(scope, replay, send)


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, message: str, headers=None) -> None:
    logger.warning("%s %s: %s", scope.get("method", "WEBSOCKET"), scope["path"], message)
    if scope["type"] == "websocket":
        # Closing before accepting: the server answers the handshake with 403.
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
        return
    await PlainTextResponse(message, status_code=status, headers=headers)(scope, receive, send)


def guard(app: ASGIApp, host: str, port: int, trusted: Iterable[str] = ()) -> ASGIApp:
    """`app` behind the Host check (400) and the origin checks (403, 405) of a server on `host`:`port`, with job
    backfills of assets launched as asset backfills (`AssetBackfills`)."""
    trusted = list(trusted)
    checked = SameOrigin(AssetBackfills(app), served_origins(host, port, trusted))
    return TrustedHostMiddleware(checked, allowed_hosts=allowed_hosts(host, trusted), www_redirect=False)


@contextlib.asynccontextmanager
async def _lifespan(app):
    # uvicorn cancels the lifespan task at shutdown: that is how it stops, not an error (as dagster-webserver does).
    try:
        yield
    except asyncio.CancelledError:
        pass


@contextlib.contextmanager
def _code_servers(instance, workspace: str | None, module: str | None) -> Iterator[Path]:
    """The code servers of the workspace (or module), started once and shared by the webserver and the daemon
    through a temporary workspace file that points at them, as `dagster dev` does."""
    import yaml
    from dagster._cli.proxy_server_manager import ProxyServerManager
    from dagster._cli.workspace.cli_target import workspace_opts_to_load_target
    from dagster_shared.cli import WorkspaceOpts

    opts = WorkspaceOpts(workspace=[workspace]) if workspace else WorkspaceOpts(module_name=[module])
    with ProxyServerManager(instance, workspace_opts_to_load_target(opts), code_server_log_level="warning") as proxy:
        with tempfile.TemporaryDirectory(prefix="quant-assets-ui-") as folder:
            path = Path(folder) / "workspace.yaml"
            path.write_text(yaml.dump({"load_from": proxy.get_code_server_specs()}))
            yield path


@contextlib.contextmanager
def _daemon(instance, workspace_file: Path, log_level: str) -> Iterator[subprocess.Popen]:
    """`dagster-daemon run` on the same instance and code servers; asked to stop through its shutdown pipe, then
    killed if it has not stopped within DAEMON_STOP_SECONDS."""
    from dagster_shared.ipc import get_ipc_shutdown_pipe, open_ipc_subprocess, send_ipc_shutdown_message
    from dagster_shared.serdes import serialize_value

    read_fd, write_fd = get_ipc_shutdown_pipe()
    command = [sys.executable, "-m", "dagster._daemon", "run", "--log-level", log_level, "--shutdown-pipe"]
    command += [str(read_fd), "--instance-ref", serialize_value(instance.get_ref()), "--workspace", str(workspace_file)]
    process = open_ipc_subprocess(command, pass_fds=[read_fd])
    os.close(read_fd)
    try:
        yield process
    finally:
        if process.poll() is None:
            send_ipc_shutdown_message(write_fd)
            try:
                process.wait(timeout=DAEMON_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                logger.warning("the daemon did not stop within %d s; killing it", DAEMON_STOP_SECONDS)
                process.kill()
                process.wait()
        else:
            os.close(write_fd)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def serve(
    host: str,
    port: int,
    trusted: Iterable[str] = (),
    workspace: str | None = None,
    module: str = "quant_assets.definitions",
    log_level: str = "info",
) -> int:
    """Serve the guarded Dagster UI on `host`:`port` with the daemon beside it, until Ctrl-C or SIGTERM; the
    instance is DAGSTER_HOME's (a temporary one without it, as for `dagster dev`). Returns 0 after a requested
    stop, 1 when the daemon died on its own (the UI is stopped then too)."""
    import uvicorn
    from dagster._cli.utils import get_possibly_temporary_instance_for_cli
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget
    from dagster_webserver.app import create_app_from_workspace_process_context
    from dagster_webserver.cli import DEFAULT_DB_STATEMENT_TIMEOUT, DEFAULT_POOL_MAX_OVERFLOW, DEFAULT_POOL_RECYCLE
    from dagster_webserver.version import __version__

    trusted = list(trusted)
    for entry in trusted:
        split_host(entry)  # a malformed entry fails before anything starts
    # uvicorn re-raises the signal that stopped it once it has shut down: with this handler SIGTERM ends up as
    # KeyboardInterrupt here, like Ctrl-C, and the daemon and code servers are stopped on the way out.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    died: list[int] = []
    try:
        with contextlib.ExitStack() as stack:
            instance = stack.enter_context(get_possibly_temporary_instance_for_cli("quant-assets ui", logger=logger))
            instance.optimize_for_webserver(
                DEFAULT_DB_STATEMENT_TIMEOUT, DEFAULT_POOL_RECYCLE, DEFAULT_POOL_MAX_OVERFLOW
            )
            workspace_file = stack.enter_context(_code_servers(instance, workspace, module))
            daemon = stack.enter_context(_daemon(instance, workspace_file, log_level))
            context = stack.enter_context(
                WorkspaceProcessContext(
                    instance,
                    version=__version__,
                    read_only=False,
                    workspace_load_target=WorkspaceFileTarget(paths=[str(workspace_file)]),
                )
            )
            app = create_app_from_workspace_process_context(context, lifespan=_lifespan)
            config = uvicorn.Config(guard(app, host, port, trusted), host=host, port=port, log_level="warning")
            server = uvicorn.Server(config)

            def watch() -> None:
                daemon.wait()
                if not server.should_exit:
                    died.append(daemon.returncode)
                    server.should_exit = True

            threading.Thread(target=watch, name="daemon-watch", daemon=True).start()
            print(
                f"serving the Dagster UI on http://{_bracketed(host)}:{port} (foreign Host and Origin refused), "
                f"daemon in process {daemon.pid}",
                flush=True,
            )
            try:
                server.run()
            except KeyboardInterrupt:
                pass
            finally:
                server.should_exit = True  # what stops the daemon from here on is this process
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    if died:
        print(f"the daemon stopped on its own (exit status {died[0]}); the UI was stopped too", file=sys.stderr)
        return 1
    return 0
