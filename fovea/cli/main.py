"""The ``fovea`` command: ``serve``, ``models``, ``iam`` and ``batch``."""

from __future__ import annotations

import typer

from fovea.cli.batch import batch_app
from fovea.cli.iam import iam_app
from fovea.cli.models import models_app
from fovea.cli.serve import serve

app = typer.Typer(
    help="Fovea: a self-hosted AI Studio for vision-language models.", no_args_is_help=True
)
app.add_typer(iam_app, name="iam", help="Folders, service accounts, roles and API keys.")
app.add_typer(models_app, name="models", help="The model catalog and the demo model.")
app.add_typer(batch_app, name="batch", help="Batch jobs on a running server.")
app.command()(serve)

if __name__ == "__main__":
    app()
