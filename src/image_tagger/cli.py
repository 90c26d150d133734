"""The ``image-tagger`` command: serve, ingest, analyze, reanalyze, export, token."""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text
from sqlalchemy import make_url, select
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from image_tagger.settings import (
    Settings,
    describe_invalid_settings,
    get_settings,
    reset_settings,
)


class _PlainArgument(TyperArgument):
    """Named by its metavar alone in help and usage (``FILE...``, ``JOB_ID``)."""

    def display_type_rich(self, ctx) -> None:
        return None

    def _get_number_range_help_str(self) -> None:
        return None

    def _usage_display_name(self) -> str:
        name = self.metavar or self.name.upper()
        return name if self.required else f"[{name}]"


class _PlainOption(TyperOption):
    """A flag shows no type; an option shows its metavar (``--port PORT``)."""

    def display_type_rich(self, ctx) -> str | None:
        if self.is_flag:
            return None
        return self.metavar or super().display_type_rich(ctx)


def _plain(param) -> None:
    plain = {TyperArgument: _PlainArgument, TyperOption: _PlainOption}
    param.__class__ = plain.get(type(param), type(param))


class _HelpStyle:
    """Help in the usual Unix style, without typer's ``<bool>`` type tags."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            _plain(param)

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            _plain(option)
        return option


class Command(_HelpStyle, TyperCommand):
    pass


class Group(_HelpStyle, TyperGroup):
    pass


app = typer.Typer(
    cls=Group,
    help="Image Tagger: cited visual metrics and VLM ratings for building photos.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
token_app = typer.Typer(
    cls=Group, help="Create, list and revoke API tokens.", no_args_is_help=True
)
app.add_typer(token_app, name="token")
vlm_app = typer.Typer(
    cls=Group, help="The VLM provider: check its set-up.", no_args_is_help=True
)
app.add_typer(vlm_app, name="vlm")

# Tables stay readable when the output goes to a file or a pipe.
console = Console(width=None if sys.stdout.isatty() else 160)
# Messages stay one line each, however long; the terminal wraps them.
err = Console(stderr=True, soft_wrap=True)

SUMMARY_METRICS = ("fractal.dimension", "color.colorfulness", "complexity.entropy_bits")


def _settings() -> Settings:
    """The settings, or a clear message about the bad variables and exit 2."""
    try:
        return get_settings()
    except ValidationError as exc:
        err.print(describe_invalid_settings(exc), highlight=False, markup=False)
        raise typer.Exit(2) from None


def _prepare(*, runs_jobs: bool = False, reads_only: bool = False) -> None:
    """Settings, logging, directories and an up-to-date schema.

    ``runs_jobs``: the command dispatches jobs, so its queue must be available.
    ``reads_only``: the command only reads what is stored, so a SQLite database
    that does not exist is a mistyped path, refused rather than created.
    """
    from image_tagger.images.formats import apply_pixel_limit
    from image_tagger.logging import configure_logging
    from image_tagger.migrations import upgrade_database

    settings = _settings()
    url = make_url(settings.sqlalchemy_url)
    if reads_only and url.get_backend_name() == "sqlite" and _nowhere(url.database):
        err.print(
            f"no database at {_database()}: nothing is stored there "
            "(IMAGE_TAGGER_DATA_DIR or IMAGE_TAGGER_DATABASE_URL chooses it; the "
            "server, `migrate` or `ingest` creates it)",
            markup=False,
        )
        raise typer.Exit(2)
    if runs_jobs and settings.unavailable_queue():
        err.print(settings.unavailable_queue(), markup=False)
        raise typer.Exit(2)
    apply_pixel_limit(settings.max_image_pixels)
    configure_logging(
        level=os.environ.get("IMAGE_TAGGER_LOG_LEVEL", "WARNING"),
        json=settings.log_json,
    )
    _require_data_dir(settings)
    _require_database(settings, upgrade_database)


def _nowhere(database: str) -> bool:
    """True when the SQLite file is missing and nothing stands in the way of
    its folder (a file where a folder should be is refused elsewhere)."""
    path = Path(database)
    if path.exists():
        return False
    return next(p for p in path.parents if p.exists()).is_dir()


def _require_data_dir(settings: Settings) -> None:
    """The data directory and its folders exist and take files, or a clear
    message and exit 2."""
    for folder in (settings.data_dir, settings.images_dir, settings.tmp_dir):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTDIR):
                # The file in the way: the folder itself, or one of its parents.
                blocking = next(p for p in (folder, *folder.parents) if p.exists())
                problem = f"{blocking} is a file, not a folder"
            elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                problem = f"this user cannot write in {folder} ({exc.strerror})"
            else:
                problem = f"cannot use {folder} ({exc.strerror})"
            err.print(
                f"IMAGE_TAGGER_DATA_DIR={str(settings.data_dir)!r}: {problem}; set "
                "it to a folder this user can create and write",
                highlight=False,
                markup=False,
            )
            raise typer.Exit(2) from None


def _require_database(settings: Settings, upgrade: Callable[[], None]) -> None:
    """Bring the schema up to date, or say which database is unreachable, exit 2."""
    from sqlalchemy.exc import OperationalError

    try:
        upgrade()
    except (OperationalError, OSError) as exc:
        # OSError: the folder of an SQLite file cannot be created.
        url = make_url(settings.sqlalchemy_url)
        shown = url.render_as_string(hide_password=True)
        if isinstance(exc, OSError):
            reason = f"{exc.strerror}: {exc.filename}"
        else:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        if url.get_backend_name() == "sqlite":
            message = (
                f"cannot open the SQLite database {url.database} ({reason}); check "
                "that this user can write that file and its folder, or choose "
                "another with IMAGE_TAGGER_DATA_DIR or IMAGE_TAGGER_DATABASE_URL"
            )
        else:
            port = url.port or (5432 if url.get_backend_name() == "postgresql" else "")
            where = f"{url.host or 'localhost'}:{port}".rstrip(":")
            message = (
                f"cannot connect to the database at {where} ({reason}); check that "
                "the server is running and accepts connections there, and the "
                f"user, password and database name in IMAGE_TAGGER_DATABASE_URL="
                f"{shown!r}"
            )
        err.print(message, highlight=False, markup=False)
        raise typer.Exit(2) from None


@app.command(cls=Command)
def serve(
    host: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS",
            help="Address to listen on (default: IMAGE_TAGGER_HOST, or 127.0.0.1)",
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            metavar="PORT",
            help="Port to listen on (default: IMAGE_TAGGER_PORT, or 8000)",
        ),
    ] = None,
) -> None:
    """Start the API and (by default) the in-process job runner."""
    import uvicorn

    from image_tagger.jobs.events import closing

    class Server(uvicorn.Server):
        async def shutdown(self, sockets=None) -> None:
            closing.set()  # open event streams end, so stopping need not wait
            await super().shutdown(sockets)

    if host:
        os.environ["IMAGE_TAGGER_HOST"] = host
    if port:
        os.environ["IMAGE_TAGGER_PORT"] = str(port)
    reset_settings()
    _prepare(runs_jobs=True)
    settings = get_settings()
    _require_free_port(settings.host, settings.port)
    config = uvicorn.Config(
        "image_tagger.app:app",
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
    )
    Server(config).run()


def _require_free_port(host: str, port: int) -> None:
    """Stop before start-up work if another process already has the port."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            err.print(
                f"cannot listen on {host}:{port} ({exc.strerror}); is another "
                "server running? Stop it, or choose --port / IMAGE_TAGGER_PORT"
            )
            raise typer.Exit(2) from None


@app.command(cls=Command)
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Analysis processes (default: IMAGE_TAGGER_WORKERS)",
            min=1,
        ),
    ] = None,
    queue: Annotated[
        str | None,
        typer.Option(
            metavar="QUEUE",
            help="Queue to take items from (default: IMAGE_TAGGER_CELERY_QUEUE)",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            metavar="NAME", help="Worker name shown in Flower (default: unique)"
        ),
    ] = None,
) -> None:
    """Start a Celery worker: it runs the items that the API dispatches."""
    if concurrency:
        os.environ["IMAGE_TAGGER_WORKERS"] = str(concurrency)
    if queue:
        os.environ["IMAGE_TAGGER_CELERY_QUEUE"] = queue
    reset_settings()
    settings = _settings()
    from image_tagger.logging import configure_logging

    try:
        from image_tagger.jobs.celery_app import RUNNERS_PER_PROCESS, create_celery_app
    except ImportError:
        err.print(
            "the worker needs Celery; install it with: pip install "
            "'image-tagger[celery]'",
            markup=False,
        )
        raise typer.Exit(2) from None
    if settings.queue != "celery":
        err.print(
            f"note: IMAGE_TAGGER_QUEUE is {settings.queue!r} here; the API sends "
            "jobs to workers only with IMAGE_TAGGER_QUEUE=celery"
        )
    _prepare()
    # Worker logs at the configured level (the other commands keep quiet).
    configure_logging(level=settings.log_level, json=settings.log_json)

    celery = create_celery_app(settings)
    celery.worker_main(
        [
            "worker",
            # Runner threads claim and record items; the pixel work runs in
            # the worker's analysis processes, two runners per process.
            "--pool=threads",
            f"--concurrency={RUNNERS_PER_PROCESS * settings.workers}",
            f"--queues={settings.celery_queue}",
            f"--hostname={name or f'image-tagger-{os.getpid()}@%h'}",
            f"--loglevel={settings.log_level}",
        ]
    )


@app.command(cls=Command)
def migrate() -> None:
    """Bring the database schema up to date."""
    _prepare()
    console.print(
        f"database schema is up to date (created if it was new): {_database()}"
    )


def _database() -> str:
    """The database the commands use, as a URL without its password."""
    url = make_url(get_settings().sqlalchemy_url)
    return url.render_as_string(hide_password=True)


@app.command(cls=Command)
def ingest(
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="PATH...",
            help="Image files, or folders: every file in them, subfolders included",
            show_default=False,
        ),
    ],
    wait: Annotated[
        bool,
        typer.Option(
            help="Run the job here and show its progress; --no-wait only records "
            "it, for a server or worker process to run"
        ),
    ] = True,
) -> None:
    """Upload images as one job through the upload service, then watch it run."""
    from image_tagger.uploads.service import receive_upload
    from image_tagger.uploads.storage import stage_path

    _prepare(runs_jobs=True)
    settings = get_settings()
    files = _expand(paths)
    if not files:
        err.print("no files found; give image files or folders that hold them")
        raise typer.Exit(2)

    staged = [
        stage_path(settings.tmp_dir, path, max_bytes=settings.max_upload_bytes)
        for path in files
    ]
    outcome = receive_upload(staged, settings=settings, created_by="cli")
    job_id, verdicts = outcome.job.id, outcome.files

    counts = {
        s: sum(v.status == s for v in verdicts)
        for s in ("accepted", "duplicate", "rejected")
    }
    console.print(
        f"job {job_id}: {_plural(len(verdicts), 'file')} "
        f"({counts['accepted']} accepted, {counts['duplicate']} duplicate, "
        f"{counts['rejected']} rejected)"
    )
    for verdict in verdicts:
        if verdict.status == "rejected":
            console.print(
                f"  rejected {escape(verdict.filename)}: {escape(verdict.reason)}"
            )

    if settings.queue == "celery" and not wait:
        from image_tagger.jobs.backends import create_backend

        backend = create_backend(settings)
        backend.dispatch(job_id)
        backend.shutdown()
        console.print(f"job {job_id} sent to the workers (image-tagger worker)")
        return
    if settings.queue == "none" or not wait:
        console.print(
            f"job {job_id} recorded; a server on this data directory with "
            "IMAGE_TAGGER_QUEUE=inprocess picks it up, or run it from the "
            f"repository root with: {sys.executable} -m scripts.run_upload_job "
            f"{job_id}"
        )
        return
    status = _run_and_watch(job_id)
    _print_job_table(job_id)
    raise typer.Exit(0 if status in ("COMPLETED", "COMPLETED_WITH_ERRORS") else 1)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


_NOT_REGULAR = "not a regular file (a device, pipe or socket)"


def _expand(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            for entry in sorted(path.rglob("*")):
                if entry.name.startswith(".") or entry.is_dir():
                    continue
                if entry.is_file():
                    files.append(entry)
                else:
                    err.print(f"skipped {entry}: {_NOT_REGULAR}")
        elif path.is_file():
            files.append(path)
        elif path.exists():
            err.print(f"skipped {path}: {_NOT_REGULAR}")
        else:
            err.print(f"skipped {path}: no such file or folder")
    return files


def _run_and_watch(job_id: int) -> str:
    from image_tagger.db import session_scope
    from image_tagger.jobs.backends import InProcessBackend, create_backend
    from image_tagger.jobs.models import FINAL_JOB_STATUSES, UploadJob

    settings = get_settings()
    backend = (
        InProcessBackend(settings, sweep=False)
        if settings.queue == "inprocess"
        else create_backend(settings)
    )
    backend.dispatch(job_id)
    try:
        with Progress(
            TextColumn("job {task.fields[job]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
        ) as progress:
            task = progress.add_task("", total=None, job=job_id, status="PENDING")
            while True:
                with session_scope() as session:
                    job = session.get(UploadJob, job_id)
                    done = job.completed_items + job.failed_items
                    progress.update(
                        task, total=job.total_items, completed=done, status=job.status
                    )
                    if job.status in FINAL_JOB_STATUSES:
                        return job.status
                time.sleep(0.25)
    finally:
        backend.shutdown()


def _print_job_table(job_id: int) -> None:
    """Every item on one line; a note shared by every item that has no error
    is printed once under the table (long texts are cut: the API has them)."""
    from image_tagger.db import session_scope
    from image_tagger.images.models import ImageAnalysis
    from image_tagger.jobs.models import UploadJob, UploadJobItem

    with session_scope() as session:
        job = session.get(UploadJob, job_id)
        items = session.scalars(
            select(UploadJobItem)
            .where(UploadJobItem.job_id == job_id)
            .order_by(UploadJobItem.id)
        ).all()
        metrics = {}
        for item in items:
            if item.image_id is not None and item.image_id not in metrics:
                analysis = session.scalar(
                    select(ImageAnalysis)
                    .where(ImageAnalysis.image_id == item.image_id)
                    .order_by(ImageAnalysis.updated_at.desc())
                    .limit(1)
                )
                metrics[item.image_id] = analysis.metrics if analysis else {}
        common = _common_note(items)

        table = Table(title=f"job {job_id}: {job.status}")
        table.add_column("item", no_wrap=True, min_width=4)
        table.add_column("file", no_wrap=True, overflow="ellipsis", max_width=24)
        table.add_column("status", no_wrap=True, min_width=9)
        for key in SUMMARY_METRICS:
            table.add_column(key, justify="right", no_wrap=True, min_width=len(key))
        table.add_column(
            "note / error", no_wrap=True, overflow="ellipsis", max_width=40
        )
        for item in items:
            values = metrics.get(item.image_id, {})
            note = item.error_message or (item.note if item.note != common else "")
            table.add_row(
                str(item.id),
                Text(item.filename),  # names are data, never markup
                item.status,
                *(_fmt(values.get(key)) for key in SUMMARY_METRICS),
                Text(note or ""),
            )
        console.print(table)
        if common:
            errors = any(item.error_message for item in items)
            who = "every item without an error" if errors else "every item"
            console.print(Text(f"{who}: {common}"))
        console.print(
            f"{job.completed_items} completed, {job.failed_items} failed "
            f"of {job.total_items} (full notes and errors: GET "
            f"/api/v1/admin/upload/jobs/{job_id})",
            highlight=False,
        )


def _common_note(items) -> str | None:
    """The note of every item that has no error, when two or more share it."""
    notes = [item.note for item in items if not item.error_message]
    if len(notes) >= 2 and notes[0] and notes.count(notes[0]) == len(notes):
        return notes[0]
    return None


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


@app.command(cls=Command)
def analyze(
    files: Annotated[
        list[Path],
        typer.Argument(
            metavar="FILE...",
            help="Image files (for a folder, use its files: DIR/*.jpg; or "
            "'image-tagger ingest DIR' to store and analyse them as a job)",
            show_default=False,
        ),
    ],
    as_json: Annotated[
        bool,
        typer.Option("--json", help="One JSON line per file instead of tables"),
    ] = False,
) -> None:
    """Compute the metrics of images and print them; nothing is stored."""
    from image_tagger.science.compute import analyze_file
    from image_tagger.uploads.validation import Rejected, inspect_image

    max_pixels = _settings().max_image_pixels
    failures = 0
    for path in files:
        try:
            _refuse_folder(path)
            inspect_image(path, max_pixels=max_pixels)  # the upload's verdict
            result = analyze_file(path)
        except (OSError, ValueError, Rejected) as exc:
            failures += 1
            message = (
                exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            )
            if as_json:
                print(json.dumps({"file": str(path), "error": message}))
            else:
                err.print(f"{path}: {message}", highlight=False, markup=False)
            continue
        if as_json:
            print(
                json.dumps(
                    {
                        "file": str(path),
                        "metrics": result.metrics,
                        "notes": result.notes,
                    }
                )
            )
            continue
        table = Table(title=str(path))
        table.add_column("metric")
        table.add_column("value", justify="right")
        table.add_column("note")
        for key, value in result.metrics.items():
            table.add_row(key, _fmt(value), result.notes.get(key, ""))
        console.print(table)
    raise typer.Exit(1 if failures else 0)


def _refuse_folder(path: Path) -> None:
    if path.is_dir():
        raise ValueError(
            "is a folder; analyze takes image files (give its files, e.g. "
            f"{path / '*.jpg'}), or store and analyse every image in it as a job "
            f"with: image-tagger ingest {path}"
        )
    if path.exists() and not path.is_file():
        raise ValueError(_NOT_REGULAR)


@app.command(cls=Command)
def reanalyze(
    every_image: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Every stored image, even those the current version has analysed "
            "(VLM results already stored from the configured model are kept)",
        ),
    ] = False,
    wait: Annotated[
        bool,
        typer.Option(
            help="Run the job here and show its progress; --no-wait only records it"
        ),
    ] = True,
) -> None:
    """Analyse again, as a new job, images analysed only by older pipeline versions."""
    from image_tagger.db import session_scope
    from image_tagger.jobs.service import create_reanalysis_job
    from image_tagger.science.pipeline import PIPELINE_VERSION

    _prepare(runs_jobs=True)
    settings = get_settings()
    with session_scope(write=True) as session:
        job = create_reanalysis_job(session, every_image=every_image, created_by="cli")
        job_id, total = (job.id, job.total_items) if job else (None, 0)
    if job_id is None:
        console.print(
            "nothing to re-analyse: every analysed image has an analysis from "
            f"pipeline version {PIPELINE_VERSION} (use --all to analyse every image "
            "again)"
        )
        return
    console.print(f"job {job_id}: {_plural(total, 'image')} to analyse again")
    if settings.queue == "none" or not wait:
        console.print(
            f"job {job_id} recorded; a server on this data directory runs it, or: "
            f"{sys.executable} -m scripts.run_upload_job {job_id}"
        )
        return
    status = _run_and_watch(job_id)
    _print_job_table(job_id)
    raise typer.Exit(0 if status in ("COMPLETED", "COMPLETED_WITH_ERRORS") else 1)


@app.command(cls=Command)
def export(
    job_id: Annotated[
        int,
        typer.Argument(
            metavar="JOB_ID",
            help="The job's id (see GET /api/v1/admin/upload/jobs or the cockpit)",
            min=1,
            max=2**31 - 1,
            show_default=False,
        ),
    ],
    export_format: Annotated[
        str,
        typer.Option("--format", "-f", metavar="csv|parquet", help="File format"),
    ] = "csv",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="File to write, or - for standard output (default: "
            "job-JOB_ID.csv or job-JOB_ID.parquet)",
        ),
    ] = None,
) -> None:
    """Write a job's results, one row per image, as CSV or Parquet."""
    from image_tagger.db import session_scope
    from image_tagger.jobs import export as job_export
    from image_tagger.jobs.models import UploadJob

    if export_format not in ("csv", "parquet"):
        err.print(f"unknown format {export_format!r}; use --format csv or parquet")
        raise typer.Exit(2)
    _prepare(reads_only=True)
    with session_scope() as session:
        if session.get(UploadJob, job_id) is None:
            err.print(f"no job {job_id}")
            raise typer.Exit(2)
        table = job_export.build_table(session, job_id)
    content = job_export.render(table, export_format)
    shape = (
        f"{_plural(len(table.rows), 'row')}, {_plural(len(table.columns), 'column')}"
    )
    if str(output) == "-":
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
        err.print(shape)
        return
    output = output or Path(f"job-{job_id}.{export_format}")
    # A link is written through: its target is replaced, the link kept.
    target = output.resolve()
    if target.exists() and not target.is_file() and not target.is_dir():
        err.print(
            f"refusing to write {output}: it is not a regular file (a device, a "
            "pipe or a socket), and writing the export in its place would replace "
            "it; give --output a file path, or - for standard output",
            markup=False,
        )
        raise typer.Exit(2)
    data_dir = get_settings().data_dir
    if target.is_relative_to(data_dir):
        err.print(
            f"refusing to write {output}: it is inside the data directory "
            f"({data_dir}), which holds the database and the images; give "
            "--output a file elsewhere",
            markup=False,
        )
        raise typer.Exit(2)
    try:
        _write_whole(target, content)
    except OSError as exc:
        err.print(
            f"cannot write {output}: {exc.strerror or exc}; give --output a file "
            "in a folder that exists and that you may write to",
            markup=False,
        )
        raise typer.Exit(2) from None
    console.print(f"{output}: {shape}")


def _write_whole(path: Path, content: bytes) -> None:
    """Write ``path`` through a temporary file beside it: a reader never sees
    half a file, and a failed write leaves the old one as it was."""
    partial = path.with_name(f".{path.name}.part")
    try:
        partial.write_bytes(content)
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


@token_app.command("create", cls=Command)
def token_create(
    role: Annotated[
        str, typer.Option(metavar="admin|tagger", help="What the token may do")
    ] = "admin",
    name: Annotated[
        str, typer.Option(metavar="NAME", help="Who or what the token is for")
    ] = "cli",
) -> None:
    """Create a token and print it (only its hash is stored)."""
    from image_tagger.auth.service import create_token
    from image_tagger.db import session_scope

    _prepare()
    try:
        with session_scope(write=True) as session:
            token = create_token(session, role=role, name=name)
    except ValueError as exc:
        err.print(str(exc))
        raise typer.Exit(2) from None
    # The token alone on stdout, for scripts; where it was stored on stderr.
    err.print(f"{role} token {name!r} created in {_database()}", highlight=False)
    print(token)


@token_app.command("revoke", cls=Command)
def token_revoke(
    token_id: Annotated[
        int,
        typer.Argument(
            metavar="TOKEN_ID",
            help="The id shown by 'image-tagger token list'",
            min=1,
            max=2**31 - 1,
            show_default=False,
        ),
    ],
) -> None:
    """Revoke a token: it stops working at once."""
    from image_tagger.auth.service import revoke_token
    from image_tagger.db import session_scope

    _prepare(reads_only=True)
    with session_scope(write=True) as session:
        revoked = revoke_token(session, token_id)
    if not revoked:
        err.print(
            f"no live token with id {token_id} in {_database()}; see: "
            "image-tagger token list",
            highlight=False,
        )
        raise typer.Exit(2)
    console.print(f"token {token_id} revoked in {_database()}", highlight=False)


@token_app.command("list", cls=Command)
def token_list() -> None:
    """List tokens (names and roles; the tokens themselves are not stored)."""
    from image_tagger.auth.service import list_tokens
    from image_tagger.db import session_scope

    _prepare(reads_only=True)
    table = Table()
    for column in ("id", "name", "role", "created", "revoked"):
        table.add_column(column)
    with session_scope() as session:
        rows = list_tokens(session)
        for row in rows:
            table.add_row(
                str(row.id),
                Text(row.name),
                row.role,
                row.created_at.isoformat(timespec="seconds"),
                row.revoked_at.isoformat(timespec="seconds") if row.revoked_at else "",
            )
    if not rows:
        console.print(
            f"no tokens in {_database()} (IMAGE_TAGGER_DATA_DIR or "
            "IMAGE_TAGGER_DATABASE_URL chooses it); create one with: "
            "image-tagger token create --role admin",
            highlight=False,
        )
        return
    console.print(f"tokens in {_database()}:", highlight=False)
    console.print(table)


@vlm_app.command("check", cls=Command)
def vlm_check(
    file: Annotated[
        Path | None,
        typer.Argument(
            metavar="FILE",
            help="A photo to send (default: a small drawn facade)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Make one real call to the configured provider and show what it answered,
    its tokens and its cost (the call is written to the ledger)."""
    from image_tagger.science.pipeline import decode_for_pipeline
    from image_tagger.vlm.analyzers import COGNITIVE, not_configured
    from image_tagger.vlm.service import CallContext, get_vlm

    _prepare()
    settings = get_settings()
    vlm = get_vlm(settings)
    if vlm is None:
        err.print(not_configured(settings), highlight=False)
        raise typer.Exit(2)
    if file is None:
        jpeg = _drawn_facade()
    else:
        try:
            _metrics, jpeg = decode_for_pipeline(
                file, None, metrics=False, vlm_image=True
            )
        except (OSError, ValueError) as exc:
            err.print(f"{file}: {exc}")
            raise typer.Exit(2) from None

    console.print(
        f"asking {vlm.model} at {settings.vlm_base_url or 'OpenAI'} "
        f"(provider {vlm.provider}) to rate {file or 'a drawn facade'} ..."
    )
    context = CallContext()
    outcome = vlm.run(COGNITIVE, jpeg, context, tool="check")
    for number, call in enumerate(context.calls, 1):
        console.print(
            f"call {number}: {call.outcome}, {call.latency_ms:.0f} ms, "
            f"{_call_usage(call)}" + (f"\n  {call.error}" if call.error else ""),
            highlight=False,
        )
    if any(c.input_tokens is not None and c.cost_usd is None for c in context.calls):
        console.print(
            f"the price of {vlm.model} at {vlm.provider} is unknown: set "
            "IMAGE_TAGGER_VLM_PROVIDER to a provider whose price table has the "
            "model, or set IMAGE_TAGGER_VLM_PRICE_INPUT_PER_MTOK_USD and "
            "IMAGE_TAGGER_VLM_PRICE_OUTPUT_PER_MTOK_USD",
            highlight=False,
        )
    if outcome.status != "ok":
        err.print(f"{outcome.status}: {outcome.reason}", highlight=False)
        raise typer.Exit(1)
    console.print_json(data=outcome.result)


def _call_usage(call) -> str:
    """A call's tokens and cost as ``vlm check`` prints them."""
    if call.input_tokens is None:
        return "no usage reported, no cost"
    cost = "unknown price" if call.cost_usd is None else f"${call.cost_usd:.6f}"
    return f"{call.input_tokens} input + {call.output_tokens} output tokens, {cost}"


def _drawn_facade() -> bytes:
    """A small drawing of a house front under a sky, as a JPEG."""
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (512, 384), (150, 190, 235))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 300, 512, 384), fill=(90, 140, 70))
    draw.rectangle((120, 150, 392, 320), fill=(200, 170, 130))
    draw.polygon([(100, 150), (256, 60), (412, 150)], fill=(150, 60, 50))
    draw.rectangle((230, 240, 282, 320), fill=(90, 60, 40))
    for left in (150, 320):
        draw.rectangle((left, 180, left + 45, 225), fill=(240, 240, 220))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


if __name__ == "__main__":
    app()
