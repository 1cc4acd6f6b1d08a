"""An HTTP handler served on a free loopback port for the length of a `with`: the fake hubs and stores."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def serve_on_loopback(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """`handler` answering at the URL yielded (`http://127.0.0.1:PORT`); stopped and joined on exit."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def serve_s3_on_loopback(objects: Mapping[str, bytes] | None = None) -> Iterator[str]:
    """An S3 store (moto's server) answering at the URL yielded; stopped on exit.

    `objects` (`s3://bucket/key` -> content) are put there first, their buckets created. moto keeps
    one store per process: what an earlier server held is still there.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        endpoint = f"http://{host}:{port}"
        if objects:
            _put_objects(endpoint, objects)
        yield endpoint
    finally:
        server.stop()


def _put_objects(endpoint: str, objects: Mapping[str, bytes]) -> None:
    import boto3  # type: ignore[import-untyped]

    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="setup", aws_secret_access_key="setup", region_name="us-east-1"
    )
    for uri, content in objects.items():
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        client.create_bucket(Bucket=bucket)
        client.put_object(Bucket=bucket, Key=key, Body=content)
