"""The baseline for upload speed: an endpoint that only streams parts to disk.

Each part of a multipart request is written to its own file as it arrives,
with the same streaming parser the service uses, parsing and writing off the
event loop as the service does, and nothing else happens: no hashing, no
checks, no database. Run with ``python -m bench.bare_upload PORT DIR``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import uvicorn
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


def make_app(folder: Path) -> Starlette:
    async def upload(request: Request) -> JSONResponse:
        _, params = parse_options_header(request.headers["content-type"])
        files: list = []

        def part_begin() -> None:
            # Closed by part_end, as the parser reports the part's end.
            handle = tempfile.NamedTemporaryFile(dir=folder, delete=False)  # noqa: SIM115
            files.append(handle)

        def part_data(data: bytes, start: int, end: int) -> None:
            files[-1].write(data[start:end])

        def part_end() -> None:
            files[-1].close()

        parser = MultipartParser(
            params[b"boundary"],
            {
                "on_part_begin": part_begin,
                "on_part_data": part_data,
                "on_part_end": part_end,
            },
        )
        async for chunk in request.stream():
            await run_in_threadpool(parser.write, chunk)
        parser.finalize()
        for handle in files:
            Path(handle.name).unlink()
        return JSONResponse({"files": len(files)})

    async def health(_: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/upload", upload, methods=["POST"]),
            Route("/healthz", health),
        ]
    )


if __name__ == "__main__":
    port, folder = int(sys.argv[1]), Path(sys.argv[2])
    folder.mkdir(parents=True, exist_ok=True)
    uvicorn.run(make_app(folder), host="127.0.0.1", port=port, log_level="warning")
