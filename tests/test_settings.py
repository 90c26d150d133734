"""Bad settings, an unusable data directory, an unreachable database: every
command stops with exit code 2 and one line saying what to set, no traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, child_env, free_port

from image_tagger.settings import Settings, accepted_range

# Every command, with arguments that would get it past its own checks.
COMMANDS = [
    ("serve",),
    ("worker",),
    ("migrate",),
    ("ingest", "photo.jpg"),
    ("analyze", "photo.jpg"),
    ("reanalyze",),
    ("export", "1"),
    ("token", "create"),
    ("token", "list"),
    ("token", "revoke", "1"),
    ("vlm", "check"),
]


def _cli(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "image-tagger"), *args],
        env=child_env(data_dir, COLUMNS="80", **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _refusal(result: subprocess.CompletedProcess) -> str:
    """The one line a refused command prints (it must print nothing else)."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_refuses_a_bad_setting_in_one_line(tmp_path, command):
    result = _cli(tmp_path / "data", *command, IMAGE_TAGGER_LEASE_SECONDS="inf")

    assert _refusal(result) == (
        "invalid setting IMAGE_TAGGER_LEASE_SECONDS='inf': not a finite number; "
        "set a number of seconds from 1 to 86400"
    )
    assert not (tmp_path / "data").exists()  # refused before touching anything


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (
            "LEASE_SECONDS",
            "-1",
            "out of range; set a number of seconds from 1 to 86400",
        ),
        ("LEASE_SECONDS", "nan", "not a finite number; set a number of seconds from 1"),
        ("ITEM_TIMEOUT_SECONDS", "0", "out of range; set a number of seconds from 1"),
        ("ITEM_TIMEOUT_SECONDS", "1e400", "not a finite number; set a number of sec"),
        ("VLM_TIMEOUT_SECONDS", "-inf", "not a finite number; set a number of seconds"),
        (
            "RECOVERY_INTERVAL_SECONDS",
            "soon",
            "not a number; set a number of seconds from 0.1 to 86400",
        ),
        ("PORT", "70000", "out of range; set a whole number from 1 to 65535"),
        ("PORT", "80.5", "not a whole number; set a whole number from 1 to 65535"),
        (
            "DATABASE_URL",
            "postgres//db-host/tagger",
            "not a database URL; give one like postgresql+psycopg://user:password@",
        ),
        (
            "DATABASE_URL",
            "mysql://db-host/tagger",
            "the database kind 'mysql' is not supported; use sqlite:///PATH or a "
            "PostgreSQL URL like postgresql+psycopg://",
        ),
        (
            "DATABASE_URL",
            "postgresql+nodriver://db-host/tagger",
            "unknown database driver 'postgresql+nodriver'; use sqlite:///PATH or",
        ),
        (
            "DATABASE_URL",
            "sqlite://",
            "an SQLite database in memory is gone when the process ends",
        ),
        ("DATABASE_URL", "sqlite:///:memory:", "give a file, like sqlite:////"),
        ("DATA_DIR", "", "empty; set a folder (./data when the variable is unset)"),
        ("BROKER_URL", "redis", "not a URL; give one like redis://127.0.0.1:6379/0"),
        (
            "VLM_BASE_URL",
            "localhost:11434/v1",
            "not a URL; give one like http://127.0.0.1:11434/v1",
        ),
        ("VLM_BASE_URL", "ftp://models.example/v1", "must start with http:// or https"),
        ("PUBLIC_URL", "http://tagger:port", "not a valid URL (Port could not be cast"),
    ],
)
def test_a_bad_value_names_the_variable_and_what_to_set(
    tmp_path, name, value, expected
):
    line = _refusal(_cli(tmp_path, "migrate", **{f"IMAGE_TAGGER_{name}": value}))

    assert line.startswith(f"invalid setting IMAGE_TAGGER_{name}={value!r}: ")
    assert expected in line


def test_each_bad_variable_has_its_line_and_passwords_stay_hidden(tmp_path):
    result = _cli(
        tmp_path,
        "token",
        "list",
        IMAGE_TAGGER_DATABASE_URL="postgresql+psycopg://tagger:s3cret@db:99999/t",
        IMAGE_TAGGER_WORKERS="0",
    )

    assert result.returncode == 2
    assert "s3cret" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "invalid setting IMAGE_TAGGER_DATABASE_URL="
        "'postgresql+psycopg://tagger:***@db:99999/t': port 99999 is out of range; "
        "give a port from 1 to 65535, like "
        "postgresql+psycopg://user:password@host:5432/dbname",
        "invalid setting IMAGE_TAGGER_WORKERS='0': out of range; set a whole number "
        "from 1 to 256",
    ]


def test_the_readme_gives_each_numeric_setting_the_range_the_service_takes():
    readme = (ROOT / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `IMAGE_")]
    for field in Settings.model_fields:
        accepted = accepted_range(field)
        if accepted is None:
            continue
        low, high = re.search(r"from (\S+) to (\S+)$", accepted).groups()
        name = f"IMAGE_TAGGER_{field.upper()}"
        short = re.sub(r"^IMAGE_TAGGER_VLM_PRICE_", "..._", name)
        row = next(r for r in rows if f"`{name}`" in r or f"`{short}`" in r)
        assert f"{low} to {high}" in row.rsplit("|", 2)[1], row


def test_an_unreachable_postgresql_names_host_and_port(tmp_path):
    port = free_port()  # nothing listens there
    url = f"postgresql+psycopg://tagger:s3cret@127.0.0.1:{port}/tagger"

    line = _refusal(_cli(tmp_path, "migrate", IMAGE_TAGGER_DATABASE_URL=url))

    assert line.startswith(f"cannot connect to the database at 127.0.0.1:{port} (")
    assert "check that the server is running and accepts connections there" in line
    assert line.endswith(
        "IMAGE_TAGGER_DATABASE_URL="
        f"'postgresql+psycopg://tagger:***@127.0.0.1:{port}/tagger'"
    )


def test_a_postgresql_url_without_a_port_names_the_default_one(tmp_path):
    url = "postgresql+psycopg://tagger@db-host.invalid/tagger"

    line = _refusal(_cli(tmp_path, "token", "list", IMAGE_TAGGER_DATABASE_URL=url))

    assert line.startswith("cannot connect to the database at db-host.invalid:5432 (")


def test_a_data_dir_that_is_a_file_is_refused(tmp_path):
    in_the_way = tmp_path / "data"
    in_the_way.write_text("notes")

    for command in (("migrate",), ("token", "list")):
        line = _refusal(_cli(in_the_way, *command))
        assert line == (
            f"IMAGE_TAGGER_DATA_DIR='{in_the_way}': {in_the_way} is a file, not a "
            "folder; set it to a folder this user can create and write"
        )
    assert in_the_way.read_text() == "notes"


def test_a_data_dir_under_a_file_names_the_file(tmp_path):
    in_the_way = tmp_path / "archive"
    in_the_way.write_text("notes")

    line = _refusal(_cli(in_the_way / "tagger" / "data", "migrate"))

    assert f": {in_the_way} is a file, not a folder; set it to a folder" in line


def test_a_data_dir_this_user_cannot_write_is_refused(tmp_path):
    locked = tmp_path / "locked"
    (locked / "images").mkdir(parents=True)
    with _read_only(locked):
        line = _refusal(_cli(locked, "migrate"))

    assert line.startswith(
        f"IMAGE_TAGGER_DATA_DIR='{locked}': this user cannot write in {locked} ("
    )
    assert line.endswith("set it to a folder this user can create and write")


def test_an_sqlite_file_in_an_impossible_place_is_refused(tmp_path):
    in_the_way = tmp_path / "file"
    in_the_way.write_text("")
    url = f"sqlite:///{in_the_way}/tagger.db"

    line = _refusal(_cli(tmp_path / "data", "migrate", IMAGE_TAGGER_DATABASE_URL=url))

    assert line.startswith(f"cannot open the SQLite database {in_the_way}/tagger.db (")
    assert "IMAGE_TAGGER_DATABASE_URL" in line


class _read_only:
    """A folder no file can be created in, for this user: without write
    permission, or (for root, who writes anywhere) immutable."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        if os.geteuid() != 0:
            self.path.chmod(0o555)
            return
        made = subprocess.run(["chattr", "+i", str(self.path)], capture_output=True)
        if made.returncode != 0:
            pytest.skip("root writes anywhere, and chattr +i is not available here")

    def __exit__(self, *exc) -> None:
        if os.geteuid() != 0:
            self.path.chmod(0o755)
        else:
            subprocess.run(["chattr", "-i", str(self.path)], check=True)
