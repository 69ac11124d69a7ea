"""Entity-group transactions, framed without the SDK's multipart machinery.

``TableClient.submit_transaction`` writes the multipart body with the standard library's email
generator and reads the answer with its email parser: about 5 ms of CPU for a transaction of
two or three rows, against about 1 ms for a single-row write (``bench/bench_job_costs.py``
and ``bench/bench_throughput.py`` show where the worker's CPU goes).  A streamed email job
writes two transactions, so this was a third of its CPU.

Here the SDK still builds every operation (``TableBatchOperations``: the same methods, URLs,
headers and entity encoding as ``submit_transaction``) and its pipeline still sends the
request (authentication, retries, logging policies); only the framing of the body and the
reading of the statuses in the answer are done here, with string joins and one regular
expression.  A transaction applies all of its operations or none, so when the answer is
anything but "every operation succeeded", nothing was written and the same operations are
submitted again through ``submit_transaction``, which raises exactly the SDK's errors
(``TableTransactionError`` with the failing index and code) or, if the rows changed
meanwhile, succeeds.  If this SDK's internals ever move, the same fallback takes over.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any

# The status line of each operation's answer inside the multipart response, in order.
_STATUS = re.compile(rb"^HTTP/1\.1 (\d{3})", re.MULTILINE)
_CRLF = "\r\n"


def _operations(client: Any, operations: Sequence[Any]) -> list[Any] | None:
    """The operations as the SDK builds them for ``submit_transaction``; None if this SDK
    has no such builder (then the caller uses ``submit_transaction`` itself)."""
    try:
        from azure.data.tables._table_batch import TableBatchOperations

        built = TableBatchOperations(
            config=client._client._config,
            endpoint=f"{client.scheme}://{client._primary_hostname}",
            table_name=client.table_name,
            is_cosmos_endpoint=client._cosmos_endpoint,
        )
        for operation in operations:
            built.add_operation(operation)
        return list(built.requests)
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - another SDK version
        return None


def _part(request: Any, index: int, changeset: str) -> str:
    body = request.content
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    body = body or ""
    lines = [
        f"--{changeset}",
        "Content-Type: application/http",
        "Content-Transfer-Encoding: binary",
        f"Content-ID: {index}",
        "",
        f"{request.method} {request.url} HTTP/1.1",
    ]
    lines += [f"{k}: {v}" for k, v in request.headers.items() if k.lower() != "content-length"]
    if body:
        lines.append(f"Content-Length: {len(body.encode('utf-8'))}")
    lines += ["", body]
    return _CRLF.join(lines)


def frame(requests: Sequence[Any]) -> tuple[str, bytes]:
    """The ``$batch`` body holding ``requests`` as one changeset, and its boundary."""
    batch, changeset = f"batch_{uuid.uuid4()}", f"changeset_{uuid.uuid4()}"
    head = _CRLF.join(
        [f"--{batch}", f"Content-Type: multipart/mixed; boundary={changeset}", "", ""]
    )
    parts = _CRLF.join(_part(r, i, changeset) for i, r in enumerate(requests))
    tail = _CRLF.join(["", f"--{changeset}--", "", f"--{batch}--", ""])
    return batch, (head + parts + tail).encode("utf-8")


def statuses(body: bytes) -> list[int]:
    """Each operation's status in a ``$batch`` answer, in order."""
    return [int(s) for s in _STATUS.findall(body)]


async def submit(client: Any, operations: Sequence[Any]) -> None:
    """``client.submit_transaction(operations)``, framed here (see the module's text)."""
    from azure.core.rest import HttpRequest

    requests = _operations(client, operations)
    if not requests:
        await client.submit_transaction(operations)
        return
    boundary, body = frame(requests)
    request = HttpRequest(
        "POST",
        f"{client.scheme}://{client._primary_hostname}/$batch",
        headers={
            "x-ms-version": client.api_version,
            "DataServiceVersion": "3.0",
            "MaxDataServiceVersion": "3.0;NetFx",
            "Content-Type": f"multipart/mixed; boundary={boundary}",
            "Accept": "application/json",
        },
        content=body,
    )
    response = await client._client.send_request(request, stream=True)
    answer = await response.read()
    codes = statuses(answer) if response.status_code == 202 else []
    if len(codes) == len(requests) and all(200 <= c < 300 for c in codes):
        return
    # Nothing was applied: let the SDK submit it again and raise its own error.
    await client.submit_transaction(operations)
