"""The command line's connection to a running Fovea server, through the official ``openai`` client.

Commands take the server's options (``--base-url``, ``--api-key``, ``--folder``, or their
``FOVEA_*`` environment variables) and open the client with ``connect``, which turns what can go
wrong on the way (a refused connection, the server's error, a ``FoveaError`` of local work) into
one line on stderr and exit status 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, cast

import httpx
import typer

from fovea.errors import FoveaError

if TYPE_CHECKING:
    import openai

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
# The openai client's default; tests that meet a refused connection set it to 0.
MAX_RETRIES = 2

BaseUrl = Annotated[
    str,
    typer.Option("--base-url", envvar="FOVEA_BASE_URL", help="The server's OpenAI API root."),
]
ApiKey = Annotated[
    str,
    typer.Option(
        "--api-key",
        envvar="FOVEA_API_KEY",
        help="An API key (fovea iam bootstrap).",
        show_default=False,
    ),
]
FolderId = Annotated[
    str | None,
    typer.Option("--folder", envvar="FOVEA_FOLDER_ID", help="Folder id, sent as OpenAI-Project."),
]


@dataclass(frozen=True)
class Server:
    """Where the server is and who the command acts as."""

    base_url: str
    api_key: str
    folder_id: str | None = None


def http_client() -> httpx.Client | None:
    """The HTTP client under the ``openai`` client; ``None`` lets it build its own.

    Tests replace this function to put a fake server (``httpx.MockTransport``) behind the client.
    """
    return None


@contextmanager
def connect(server: Server) -> Iterator[openai.OpenAI]:
    """An ``openai`` client for the server; failures inside become one line and exit 1."""
    # Imported here: it takes ~0.4 s, which every other `fovea` command would pay.
    import openai

    headers = {"OpenAI-Project": server.folder_id} if server.folder_id else None
    client = openai.OpenAI(
        base_url=server.base_url,
        api_key=server.api_key,
        default_headers=headers,
        max_retries=MAX_RETRIES,
        # openai 1.x types this as an httpx.Client, later versions as an httpx2.Client; both
        # accept an httpx.Client at run time.
        http_client=cast(Any, http_client()),
    )
    try:
        yield client
    except openai.APITimeoutError:
        fail(f"The server at {server.base_url} did not answer in time")
    except openai.APIConnectionError:
        fail(f"Cannot reach the server at {server.base_url}: is `fovea serve` running there?")
    except openai.APIStatusError as exc:
        fail(server_message(exc))
    except FoveaError as exc:
        fail(exc.message)
    finally:
        client.close()


def server_message(exc: openai.APIStatusError) -> str:
    """The message of the server's ``{"error": {...}}`` body, else openai's own text."""
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return f"{body['message']} (HTTP {exc.status_code})"
    return exc.message


def fail(message: str, *, code: int = 1) -> NoReturn:
    """Print ``Error: message`` on stderr and exit with ``code``."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code)
