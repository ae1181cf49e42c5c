"""`tether model`: push model versions and look at the registry."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from common.cli_options import json_option
from common.display import when
from common.schemas import ModelDetail, ModelVersion
from control_plane.cli.client import OperatorClient
from control_plane.cli.options import JsonValue, name_argument, with_client
from control_plane.cli.output import echo_json, echo_table, size, version_label
from control_plane.cli.provenance import (
    InputExampleError,
    code_revision,
    feature_names,
    input_schema,
)

FORMATS = ("joblib", "skops")


@click.group()
def model() -> None:
    """Push model versions and look at the registry.

    \b
    Example:
      tether model push wine ./wine.joblib --metadata '{"metrics": {"accuracy": 0.97}}'
    """


@model.command()
@name_argument("name", "model name", "NAME")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    help="Artifact format [from the extension: .skops is skops, else joblib].",
)
@click.option(
    "--metadata",
    type=JsonValue(dict, described="a JSON object"),
    metavar="JSON",
    help="JSON object, or @FILE: description, metrics, params, tags, "
    "training_data_fingerprint... Its keys win over what push finds itself.",
)
@click.option(
    "--input-example",
    type=JsonValue(list, dict, described="a JSON array of objects"),
    metavar="JSON",
    help="Rows ([{feature: value}, ...]) or @FILE: the smoke test agents run before "
    "serving, and the source of the input schema's types.",
)
@click.option(
    "--reference",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="DATA",
    help="Training data (.csv or .parquet): its reference profile, and the model's "
    "predictions on it, are what agents measure drift against.",
)
@click.option(
    "--target", metavar="COLUMN", help="The label column of --reference, left out of the profile."
)
@json_option
@with_client
def push(
    client: OperatorClient,
    name: str,
    file: Path,
    fmt: str | None,
    metadata: dict[str, Any] | None,
    input_example: Any,
    reference: Path | None,
    target: str | None,
    as_json: bool,
) -> None:
    """Upload FILE as the next version of model NAME.

    Also records the code revision (the git commit of the current directory, with -dirty if
    tracked files changed) and the input schema: feature names from the estimator's
    feature_names_in_, typed from --input-example rows where given, else "number". Finding the
    names unpickles FILE locally: push only files you trust.

    With --reference, builds the version's reference profile from the training data (and the
    model's predictions on it): what agents measure drift against.

    \b
    Example:
      tether model push wine ./wine.joblib \\
        --metadata '{"metrics": {"accuracy": 0.97}, "tags": {"team": "ml"}}' \\
        --input-example '[{"alcohol": 13.2, "malic_acid": 1.78}]'
      tether model push wine ./wine.joblib --reference train.csv --target label
    """
    rows = _example_rows(input_example)
    user = metadata or {}
    fmt = user.get("format") or fmt or ("skops" if file.suffix == ".skops" else "joblib")
    found: dict[str, Any] = {"format": fmt}
    if (revision := code_revision()) is not None:
        found["code_revision"] = revision
    # Unpickle only when it tells us something: a joblib file, with no schema given by the user.
    wants_names = fmt == "joblib" and "input_schema" not in user
    names = _feature_names(file) if wants_names else None
    try:
        schema, notes = input_schema(names, rows)
    except InputExampleError as error:
        raise click.BadParameter(str(error), param_hint="'--input-example'") from None
    for note in notes if "input_schema" not in user else []:
        click.echo(f"note: {note}", err=True)
    if schema is not None:
        found["input_schema"] = schema
    if rows is not None:
        found["input_example"] = rows
    profile = _profile(file, fmt, reference, target) if reference is not None else None

    total = file.stat().st_size
    with (
        open(file, "rb") as artifact,
        _progress(total, f"Uploading {file.name}", visible=not as_json) as report,
    ):
        version = client.push_version(
            name,
            artifact,
            {**found, **user},
            filename=file.name,
            on_progress=report,
            reference_profile=profile,
        )
    if as_json:
        echo_json(version)
        return
    click.echo(
        f"Pushed {version.model} {version_label(version.version)} "
        f"({version.artifact.format.value}, {size(version.artifact.size)}, "
        f"sha256 {version.artifact.sha256[:12]})"
    )
    click.echo(f"  code revision: {version.code_revision or '-'}")
    features = len(version.input_schema) if version.input_schema else 0
    click.echo(f"  input schema:  {features} feature(s)")
    reference_size = version.reference_profile.size if version.reference_profile else None
    click.echo(f"  reference:     {size(reference_size) + ' profile' if reference_size else '-'}")


def _profile(file: Path, fmt: str, reference: Path, target: str | None) -> bytes:
    from control_plane.cli.reference import ReferenceDataError, reference_profile

    try:
        return reference_profile(file, fmt, reference, target).model_dump_json().encode()
    except ReferenceDataError as error:
        raise click.BadParameter(str(error), param_hint="'--reference'") from None


def _example_rows(value: Any) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    rows = [value] if isinstance(value, dict) else value
    if not rows or not all(isinstance(row, dict) for row in rows):
        raise click.BadParameter(
            "must be a JSON object or a non-empty array of objects ({feature: value})",
            param_hint="'--input-example'",
        )
    return rows


def _feature_names(file: Path) -> list[str] | None:
    try:
        return feature_names(file)
    except Exception as error:  # any unpickling failure: push anyway, without a schema
        click.echo(f"note: could not load {file.name} to read its features: {error}", err=True)
        return None


@contextmanager
def _progress(total: int, label: str, visible: bool) -> Iterator[Callable[[int], None]]:
    """Yield a callback taking the bytes sent so far, drawing a bar on a terminal."""
    stream = sys.stderr  # looked up now: CliRunner swaps it
    if not visible or not stream.isatty():
        yield lambda position: None
        return
    with click.progressbar(length=total, label=label, file=stream, show_pos=False) as bar:
        # httpx reports positions; the bar wants increments (never negative on a rewind).
        yield lambda position: bar.update(max(0, position - bar.pos))


@model.command(name="list")
@json_option
@with_client
def list_models(client: OperatorClient, as_json: bool) -> None:
    """List models with their latest version.

    \b
    Example:
      tether model list
    """
    models = client.list_models()
    if as_json:
        echo_json(models)
        return
    echo_table(
        ["model", "latest", "versions", "created"],
        [
            [m.name, version_label(m.latest_version), m.version_count, when(m.created_at)]
            for m in models.models
        ],
        empty="No models yet: push one with `tether model push NAME FILE`.",
    )


@model.command()
@name_argument("name", "model name", "NAME")
@click.argument("version", type=click.IntRange(min=1), required=False)
@json_option
@with_client
def show(client: OperatorClient, name: str, version: int | None, as_json: bool) -> None:
    """Show model NAME (its versions and deployments), or one VERSION of it in full.

    \b
    Examples:
      tether model show wine
      tether model show wine 3 --json
    """
    if version is None:
        detail = client.show_model(name)
        if as_json:
            echo_json(detail)
        else:
            _echo_model(detail)
        return
    found = client.show_version(name, version)
    if as_json:
        echo_json(found)
    else:
        _echo_version(found)


def _echo_model(detail: ModelDetail) -> None:
    click.echo(
        f"Model {detail.name}: {detail.version_count} version(s), "
        f"latest {version_label(detail.latest_version)}\n"
    )
    echo_table(
        ["version", "created", "by", "format", "size", "sha256", "code revision"],
        [
            [
                version_label(v.version),
                when(v.created_at),
                v.created_by,
                v.artifact.format.value,
                size(v.artifact.size),
                v.artifact.sha256[:12],
                (v.code_revision or "-")[:18],
            ]
            for v in detail.versions
        ],
        empty="No versions.",
    )
    click.echo("")
    echo_table(
        ["environment", "version", "shadow"],
        [
            [d.environment, version_label(d.version), version_label(d.shadow)]
            for d in detail.deployments
        ],
        empty="Not deployed in any environment.",
    )


def _echo_version(found: ModelVersion) -> None:
    def pairs(values: dict[str, Any]) -> str:
        return ", ".join(f"{key}={value}" for key, value in values.items()) or "-"

    fields = [
        ("model", found.model),
        ("version", version_label(found.version)),
        ("format", found.artifact.format.value),
        ("size", size(found.artifact.size)),
        ("sha256", found.artifact.sha256),
        ("created", f"{when(found.created_at)} by {found.created_by}"),
        ("code revision", found.code_revision or "-"),
        ("training data", found.training_data_fingerprint or "-"),
        ("description", found.description or "-"),
        ("metrics", pairs(found.metrics)),
        ("params", pairs(found.params)),
        ("tags", pairs(found.tags)),
        ("input example", f"{len(found.input_example)} row(s)" if found.input_example else "-"),
    ]
    width = max(len(label) for label, _ in fields)
    for label, value in fields:
        click.echo(f"{label.ljust(width)}  {value}")
    click.echo("")
    echo_table(
        ["feature", "type"],
        [[feature.name, feature.type.value] for feature in found.input_schema or []],
        empty="No input schema.",
    )
