"""The ``fovea`` command: ``serve``, ``models``, ``iam`` and ``batch``."""

from __future__ import annotations

import typer

from fovea.cli.batch import batch_app
from fovea.cli.iam import iam_app
from fovea.cli.logs import logs_app
from fovea.cli.models import models_app
from fovea.cli.quota import quota_app
from fovea.cli.serve import serve
from fovea.cli.usage import usage

app = typer.Typer(
    help="Fovea: a self-hosted AI Studio for vision-language models.", no_args_is_help=True
)
app.add_typer(iam_app, name="iam", help="Folders, service accounts, roles, keys, audit log.")
app.add_typer(models_app, name="models", help="The model catalog and the demo model.")
app.add_typer(batch_app, name="batch", help="Batch jobs on a running server.")
app.add_typer(quota_app, name="quota", help="Quotas and rate limits per folder or key.")
app.add_typer(logs_app, name="logs", help="The request log (FOVEA_REQUEST_LOG).")
app.command()(serve)
app.command()(usage)

if __name__ == "__main__":
    app()
