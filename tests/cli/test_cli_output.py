"""What the commands print: help, the results table, analyze's verdicts, tokens."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, child_env, jpeg_bytes

from image_tagger.vlm.analyzers import NOT_CONFIGURED

NOT_REGULAR = "not a regular file (a device, pipe or socket)"

COMMANDS = [
    (),
    ("serve",),
    ("migrate",),
    ("ingest",),
    ("analyze",),
    ("reanalyze",),
    ("export",),
    ("token",),
    ("token", "create"),
    ("token", "list"),
    ("token", "revoke"),
    ("vlm",),
    ("vlm", "check"),
]


def _cli(data_dir, *args: str, columns: int = 200, **env: str):
    return subprocess.run(
        [str(Path(sys.executable).parent / "image-tagger"), *args],
        env=child_env(data_dir, COLUMNS=str(columns), **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_names_arguments_by_their_metavar_without_type_tags(data_dir, command):
    result = _cli(data_dir, *command, "--help", columns=100)

    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "Usage: image-tagger" in text
    # No typer type tags, braces or 64-bit ranges: <bool>, <list[Path]>, {files}.
    assert not re.search(r"<(bool|str|int|path|list\[\w+\])", text), text
    assert "{" not in text and "9223372036854775807" not in text, text
    assert "Show this message and exit." in text


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        (("analyze",), "image-tagger analyze [OPTIONS] FILE..."),
        (("ingest",), "image-tagger ingest [OPTIONS] PATH..."),
        (("export",), "image-tagger export [OPTIONS] JOB_ID"),
        (("token", "revoke"), "image-tagger token revoke [OPTIONS] TOKEN_ID"),
        (("vlm", "check"), "image-tagger vlm check [OPTIONS] [FILE]"),
    ],
)
def test_usage_lines_use_unix_metavars(data_dir, command, usage):
    assert usage in _cli(data_dir, *command, "--help").stdout


def test_the_results_table_keeps_one_line_per_item_and_says_a_common_note_once(
    data_dir, tmp_path
):
    folder = tmp_path / "batch"
    folder.mkdir()
    for n in range(3):
        (folder / f"{n}.jpg").write_bytes(jpeg_bytes(200 + n))
    (folder / "notes.jpg").write_text("not a photo")

    result = _cli(data_dir, "ingest", str(folder), columns=120)

    assert result.returncode == 0, result.stderr
    out = result.stdout
    # The VLM note shared by the three photos is printed once, whole.
    assert " ".join(out.split()).count(NOT_CONFIGURED) == 1, out
    assert "every item without an error: VLM cognitive, patterns skipped" in out
    for name in ("0.jpg", "1.jpg", "2.jpg", "notes.jpg"):
        rows = [line for line in out.splitlines() if f" {name} " in line]
        assert len(rows) == 1, out
    rejected = next(line for line in out.splitlines() if " notes.jpg " in line)
    assert "rejected: not an image" in rejected and "…" in rejected
    # Every table row is one line: no line holds only a wrapped continuation.
    table = out[out.index("┏") : out.index("└")]
    assert len([line for line in table.splitlines() if line.startswith("│")]) == 4


def test_analyze_refuses_a_folder_and_points_to_ingest(data_dir, tmp_path):
    result = _cli(data_dir, "analyze", str(tmp_path))

    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert f"{tmp_path}: is a folder; analyze takes image files" in message
    assert f"image-tagger ingest {tmp_path}" in message


def test_analyze_gives_the_upload_verdicts(data_dir, tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    icon = tmp_path / "favicon.jpg"
    from PIL import Image

    Image.new("RGB", (16, 16)).save(icon, format="ICO")

    result = _cli(data_dir, "analyze", "--json", str(empty), str(icon))

    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 1
    assert lines == [
        {"file": str(empty), "error": "file is empty"},
        {
            "file": str(icon),
            "error": "image format ICO is not supported; convert it to JPEG or PNG",
        },
    ]


def test_analyze_gives_the_size_pixels_and_limit_of_a_too_large_image(
    data_dir, tmp_path
):
    from corpus import jpeg_with_size, png_forged_header

    # Past the limit, and past twice it (where Pillow refuses to open it).
    near = tmp_path / "near.png"
    near.write_bytes(png_forged_header(300, 200))
    far = tmp_path / "far.jpg"
    far.write_bytes(jpeg_with_size(jpeg_bytes(7), 65_000, 40_000))

    result = _cli(
        data_dir,
        "analyze",
        "--json",
        str(near),
        str(far),
        IMAGE_TAGGER_MAX_IMAGE_PIXELS="50000",
    )

    assert result.returncode == 1
    assert [json.loads(line)["error"] for line in result.stdout.splitlines()] == [
        "image has 300x200 = 60,000 pixels; the limit is 50,000 pixels, set "
        "IMAGE_TAGGER_MAX_IMAGE_PIXELS to raise it",
        "image has 65000x40000 = 2,600,000,000 pixels; the limit is 50,000 "
        "pixels, set IMAGE_TAGGER_MAX_IMAGE_PIXELS to raise it",
    ]


def test_token_commands_say_which_database_they_used(data_dir):
    from sqlalchemy.engine import make_url

    from image_tagger.settings import get_settings

    # The data directory's SQLite file, or the PostgreSQL pass's database.
    url = make_url(get_settings().sqlalchemy_url)
    database = url.render_as_string(hide_password=True)

    empty = _cli(data_dir, "token", "list")
    created = _cli(data_dir, "token", "create", "--name", "alice")
    listed = _cli(data_dir, "token", "list")
    revoked = _cli(data_dir, "token", "revoke", "1")

    assert empty.returncode == 0
    assert f"no tokens in {database}" in " ".join(empty.stdout.split())
    assert created.stdout.strip().startswith("itk_")  # the token alone on stdout
    assert f"admin token 'alice' created in {database}" in created.stderr
    assert f"tokens in {database}:" in listed.stdout and "alice" in listed.stdout
    assert f"token 1 revoked in {database}" in revoked.stdout


def test_reading_commands_refuse_a_database_that_does_not_exist_and_create_none(
    tmp_path,
):
    missing = tmp_path / "typo" / "data"
    env = {
        "IMAGE_TAGGER_DATA_DIR": str(missing),
        "IMAGE_TAGGER_DATABASE_URL": f"sqlite:///{missing}/image_tagger.db",
    }

    for command in (("token", "list"), ("token", "revoke", "1"), ("export", "1")):
        result = _cli(tmp_path, *command, **env)

        assert result.returncode == 2, (command, result.stdout, result.stderr)
        message = " ".join(result.stderr.split())
        assert message == (
            f"no database at sqlite:///{missing}/image_tagger.db: nothing is stored "
            "there (IMAGE_TAGGER_DATA_DIR or IMAGE_TAGGER_DATABASE_URL chooses it; "
            "the server, `migrate` or `ingest` creates it)"
        )
    assert not (tmp_path / "typo").exists()


def test_export_to_a_place_it_cannot_write_says_so_and_exits_2(data_dir, tmp_path):
    photo = tmp_path / "a.jpg"
    photo.write_bytes(jpeg_bytes(3))
    assert _cli(data_dir, "ingest", str(photo)).returncode == 0

    for target in (tmp_path / "no-such-folder" / "x.csv", tmp_path):
        result = _cli(data_dir, "export", "1", "-o", str(target))

        assert result.returncode == 2, result.stderr
        message = " ".join(result.stderr.split())
        assert message.startswith(f"cannot write {target}: ")
        assert "give --output a file in a folder that exists" in message
        assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("**/*.part"))

    # Never over the database (SQLite's file in the data directory), nor
    # anywhere else in the data directory.
    kept = data_dir / "image_tagger.db"
    if not kept.exists():  # the PostgreSQL pass: a file of the data directory
        kept = next(p for p in (data_dir / "images").rglob("*") if p.is_file())
    before = kept.read_bytes()[:16]  # a header: SQLite, or the image format
    for target in (kept, data_dir / "images" / "x.csv"):
        result = _cli(data_dir, "export", "1", "-o", str(target))

        assert result.returncode == 2, result.stderr
        message = " ".join(result.stderr.split())
        assert message.startswith(f"refusing to write {target}: it is inside the data")
    assert kept.read_bytes()[:16] == before
    assert not (data_dir / "images" / "x.csv").exists()
    assert _cli(data_dir, "token", "list").returncode == 0


def test_export_writes_through_a_link_to_stdout_and_never_over_a_device(
    data_dir, tmp_path
):
    photo = tmp_path / "a.jpg"
    photo.write_bytes(jpeg_bytes(4))
    assert _cli(data_dir, "ingest", str(photo)).returncode == 0

    # A pipe (as a device would be) is refused and left as it was.
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    refused = _cli(data_dir, "export", "1", "-o", str(fifo))
    assert refused.returncode == 2, refused.stderr
    message = " ".join(refused.stderr.split())
    assert message.startswith(f"refusing to write {fifo}: it is not a regular file")
    assert "or - for standard output" in message
    assert stat.S_ISFIFO(fifo.stat().st_mode)

    # A link: its target gets the export, the link stays a link.
    target, link = tmp_path / "target.csv", tmp_path / "link.csv"
    target.write_text("old")
    link.symlink_to(target)
    written = _cli(data_dir, "export", "1", "-o", str(link))
    assert written.returncode == 0, written.stderr
    assert link.is_symlink()
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [row["filename"] for row in rows] == ["a.jpg"]

    # - is standard output: the file there, the summary on stderr.
    piped = _cli(data_dir, "export", "1", "-o", "-")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == target.read_text()
    assert "1 row" in piped.stderr
    assert not (ROOT / "-").exists()


def test_ingest_skips_what_is_not_a_regular_file_saying_so(data_dir, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    result = _cli(data_dir, "ingest", str(fifo), "/dev/null", str(tmp_path / "gone"))

    lines = result.stderr.splitlines()
    assert f"skipped {fifo}: not a regular file (a device, pipe or socket)" in lines
    assert "skipped /dev/null: not a regular file (a device, pipe or socket)" in lines
    assert f"skipped {tmp_path / 'gone'}: no such file or folder" in lines


def test_a_folder_s_pipes_and_device_links_are_named_as_skipped(data_dir, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(jpeg_bytes(5))
    os.mkfifo(folder / "pipe.jpg")
    (folder / "zero.jpg").symlink_to("/dev/zero")

    ingested = _cli(data_dir, "ingest", str(folder))
    analysed = _cli(data_dir, "analyze", str(folder / "zero.jpg"))

    assert ingested.returncode == 0, ingested.stderr
    lines = ingested.stderr.splitlines()
    for name in ("pipe.jpg", "zero.jpg"):
        assert f"skipped {folder / name}: {NOT_REGULAR}" in lines
    assert "1 accepted" in ingested.stdout
    assert analysed.returncode == 1
    assert f"{folder / 'zero.jpg'}: {NOT_REGULAR}" in " ".join(analysed.stderr.split())
