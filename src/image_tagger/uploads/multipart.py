"""Streaming a multipart request's files straight into staging files.

Each part of the field ``files`` is written to its own staging file as the
bytes arrive (hashed and counted on the way); nothing is held whole in memory.
"""

from __future__ import annotations

import errno
from email.message import Message
from pathlib import Path

from fastapi import HTTPException, Request, status
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from image_tagger.uploads.storage import StagedFile, begin_staging

FIELD = "files"


class TooManyFiles(Exception):
    pass


class IncompleteBody(Exception):
    pass


class _Receiver:
    """Collects the parts of one request as the parser reports them."""

    def __init__(self, tmp_dir: Path, *, max_bytes: int, max_files: int) -> None:
        self.tmp_dir = tmp_dir
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.files: list[StagedFile] = []
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[str, str] = {}
        self._current: StagedFile | None = None
        self.complete = False

    def callbacks(self) -> dict:
        return {
            "on_end": self._end,
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field_data,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers = {}
        self._current = None

    def _header_field_data(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        name = self._header_field.decode("latin-1").strip().lower()
        self._headers[name] = self._header_value.decode("utf-8", "replace")
        self._header_field = b""
        self._header_value = b""

    def _headers_finished(self) -> None:
        disposition = Message()
        disposition["content-disposition"] = self._headers.get(
            "content-disposition", ""
        )
        field = disposition.get_param("name", header="content-disposition")
        filename = disposition.get_filename()
        if field != FIELD or filename is None:
            return  # other fields are ignored
        if len(self.files) >= self.max_files:
            raise TooManyFiles
        self._current = begin_staging(self.tmp_dir, filename, max_bytes=self.max_bytes)
        self.files.append(self._current)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current is not None:
            self._current.write(data[start:end])

    def _part_end(self) -> None:
        if self._current is not None:
            self._current.close()
        self._current = None

    def _end(self) -> None:
        self.complete = True

    def discard_all(self) -> None:
        for staged in self.files:
            staged.discard()


#: What to send, in every refusal of a request that is not such an upload.
HOW_TO_SEND = (
    "send the images as multipart/form-data, each file in the field 'files' "
    "(curl -F files=@photo.jpg ...; HTTP clients write the Content-Type and its "
    "boundary themselves)"
)


def _content_type_problem(header: str | None) -> tuple[int, str] | None:
    """Status and message for a Content-Type that is no multipart upload."""
    content_type, params = parse_options_header(header)
    if not header:
        return status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, (
            f"the request has no Content-Type header; {HOW_TO_SEND}"
        )
    if content_type != b"multipart/form-data":
        shown = content_type.decode("latin-1")[:100]
        return status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, (
            f"the request's Content-Type is {shown!r}, not multipart/form-data; "
            f"{HOW_TO_SEND}"
        )
    if not params.get(b"boundary"):
        return status.HTTP_400_BAD_REQUEST, (
            "the Content-Type multipart/form-data has no boundary parameter, so "
            f"its parts cannot be told apart; {HOW_TO_SEND}"
        )
    return None


def _parse_problem(exc: Exception, boundary: bytes) -> str:
    """The multipart parser's complaint, in words that say what to send."""
    said = str(exc)
    shown = boundary.decode("latin-1")[:80]
    if said.startswith("Boundary length"):
        problem = (
            f"the boundary in the Content-Type header is {len(boundary)} bytes "
            "long, more than the 256 allowed; send a shorter one (HTTP clients "
            "choose about 40)"
        )
    elif "boundary" in said:
        problem = (
            f"the body does not follow the boundary {shown!r} of the Content-Type "
            f"header: each part must begin with a line '--{shown}' and the body "
            f"end with '--{shown}--'; send the header and the body that an HTTP "
            "client writes together"
        )
    elif said == "Maximum header size exceeded":
        problem = (
            "a part's header line is longer than 4 kB; keep file names under "
            "255 characters"
        )
    elif said == "Maximum header count exceeded":
        problem = (
            "a part has more than 8 header lines; send Content-Disposition and "
            "Content-Type only"
        )
    elif "header" in said:
        problem = (
            f"a part's headers are malformed ({said}): each part needs a line "
            '\'Content-Disposition: form-data; name="files"; '
            "filename=\"photo.jpg\"', then an empty line, then the file's bytes"
        )
    else:
        problem = said
    return f"the multipart body could not be read: {problem}; nothing was stored"


async def receive_files(
    request: Request, *, tmp_dir: Path, max_bytes: int, max_files: int
) -> list[StagedFile]:
    """Stream the request's ``files`` parts to staging files, in upload order."""
    header = request.headers.get("content-type")
    refusal = _content_type_problem(header)
    if refusal is not None:
        raise HTTPException(*refusal)
    boundary = parse_options_header(header)[1][b"boundary"]

    receiver = _Receiver(tmp_dir, max_bytes=max_bytes, max_files=max_files)
    received = 0
    try:
        parser = MultipartParser(boundary, receiver.callbacks())
        async for chunk in request.stream():
            received += len(chunk)
            await run_in_threadpool(parser.write, chunk)
        parser.finalize()
        if not receiver.complete:
            raise IncompleteBody
    except TooManyFiles:
        receiver.discard_all()
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=(
                f"more than {max_files} files in one upload; send at most "
                f"{max_files} per request or set IMAGE_TAGGER_MAX_FILES_PER_UPLOAD "
                "to raise the limit"
            ),
        ) from None
    except OSError as exc:
        receiver.discard_all()
        if exc.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise
        raise HTTPException(
            status.HTTP_507_INSUFFICIENT_STORAGE,
            detail=f"the server could not store the upload ({exc.strerror}); "
            "nothing was stored: free space in the data directory and send it again",
        ) from exc
    except IncompleteBody:
        receiver.discard_all()
        if received == 0:
            detail = f"the request body is empty; {HOW_TO_SEND}"
        else:
            detail = (
                "the multipart body ended before its closing boundary (the upload "
                "was cut off); nothing was stored, send it again"
            )
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=detail) from None
    except Exception as exc:
        receiver.discard_all()
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, detail=_parse_problem(exc, boundary)
        ) from exc
    finally:
        if receiver._current is not None:
            receiver._current.close()

    if not receiver.files:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail="no files in the upload; send images in the multipart field 'files'",
        )
    return receiver.files
