"""The ``tagsmith`` command line: one sub-command group per noun.

Heavy libraries (torch, llama.cpp, FastAPI) are imported inside the commands that need
them, so ``tagsmith --help`` stays instant.
"""

from __future__ import annotations

import typer

from serve.cli._common import console, fail
from serve.cli.crosswalk_cmd import app as crosswalk_app
from serve.cli.db_cmd import app as db_app
from serve.cli.doctor_cmd import doctor
from serve.cli.eval_cmd import app as eval_app
from serve.cli.finetune_cmd import finetune, finetune_blend
from serve.cli.index_cmd import app as index_app
from serve.cli.keys_cmd import app as keys_app
from serve.cli.llm_cmd import app as llm_app
from serve.cli.review_cmd import app as review_app
from serve.cli.serve_cmd import serve
from serve.cli.tag_cmd import tag
from serve.cli.tag_file_cmd import tag_file
from serve.cli.taxonomy_cmd import app as taxonomy_app

app = typer.Typer(
    name="tagsmith",
    help="Tag e-commerce products with nodes of your taxonomy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(llm_app, name="llm", help="Inspect and exercise the LLM backend.")
app.add_typer(index_app, name="index", help="Build, extend, inspect and query the example index.")
app.add_typer(eval_app, name="eval", help="Evaluate pipelines on labelled data, report, gate regressions.")
app.add_typer(keys_app, name="keys", help="Create, list and revoke the HTTP service's API keys.")
app.add_typer(review_app, name="review", help="The review queue: export decisions and doubtful products, counts.")
app.add_typer(taxonomy_app, name="taxonomy", help="Import, export, inspect and validate against the taxonomy.")
app.add_typer(db_app, name="db", help="The database of the service's state: create or upgrade its schema.")
app.add_typer(crosswalk_app, name="crosswalk", help="Crosswalks to other taxonomies (e.g. Google): import, show, broken rows.")
app.command(help="Check the installation: versions, model files, GPU, one constrained generation.")(doctor)
app.command(help="Run the HTTP service.")(serve)
app.command(help="Tag one product and print the result.")(tag)
app.command("tag-file", help="Tag a JSONL file of products (resumable).")(tag_file)
app.command(help="Fine-tune the LLM on your tagged products (resumable).")(finetune)
app.command(name="finetune-blend", help="Fit a fine-tuned model's weight in the blend with the vote.")(finetune_blend)

__all__ = ["app", "console", "fail", "main"]


def main() -> None:
    app()
