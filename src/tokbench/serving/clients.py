"""One run's load offered by fresh client processes (``serve-bench --clients N``; every run of ``tokbench ab``).

One asyncio process tops out below the rates a fast server takes (its p99 send lag passes the budget:
``benchmarks/serving_client.py``), so the schedule is split. The parent builds every request and the whole
schedule, exactly as one process would (``load.arrival_offsets_ns``); open loop, arrival i goes to client i mod N
(each sends every N-th arrival at its absolute instant); closed loop, the C slots are dealt out the same way (slot
s to client s mod N, request i to slot i mod C). Warmup requests are dealt round-robin too.

Each client is ``python -m tokbench.serving.clients JOB.json`` in its own session: it reads its share from the job
file and the API key from its stdin (so the key is in no file, argument list or environment), runs its warmup
requests, holds an open connection, prints ``ready``, then reads the common start instant from stdin and sends its
share. Every process reads one clock: ``time.perf_counter_ns`` is ``clock_gettime(CLOCK_MONOTONIC)`` on Linux,
one clock for the whole machine (``tests/system/test_serving_clients.py`` checks that a child's reading falls
between two of its parent's), so intended instants and stamps from different clients merge as they are. A client
that crashes or outlives the deadline is ended, and its requests are recorded as ``client_failed`` with its error
output: never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tokbench.clock import perf_counter_ns
from tokbench.serving.client import RequestSpec, StreamOutcome
from tokbench.serving.http import Endpoint
from tokbench.serving.launch import stop
from tokbench.serving.load import LoadPlan, LoadRunner, arrival_offsets_ns

CLIENT_MODULE = "tokbench.serving.clients"
READY = b"ready\n"
# Between the moment every client said ready and the first send: the start instant must reach each client first.
START_LEAD_NS = 50_000_000
STDERR_TAIL_CHARS = 1500
TERMINATE_GRACE_S = 2.0


@dataclass(frozen=True)
class ClientShare:
    """What one client process sends: its warmup requests, then its measured ones (open loop: each at its
    instant after the common start; closed loop: through its ``workers`` slots)."""

    client: int
    specs: tuple[RequestSpec, ...]
    offsets_ns: tuple[int, ...] = ()
    workers: int = 1

    @property
    def measured(self) -> list[RequestSpec]:
        return [spec for spec in self.specs if not spec.warmup]


@dataclass
class ClientsOutcome:
    """Every request's outcome, the client process of each, and what went wrong with any client."""

    outcomes: dict[int, StreamOutcome]
    client_of: dict[int, int]
    processes: int
    failures: list[str] = field(default_factory=list)


def usable_clients(plan: LoadPlan, measured: int, clients: int) -> int:
    """As many processes as asked, but no more than there are measured requests (or closed-loop slots)."""
    limit = measured if plan.load == "rate" else min(plan.concurrency, measured)
    return max(1, min(clients, limit))


def split_load(plan: LoadPlan, specs: Sequence[RequestSpec], clients: int) -> list[ClientShare]:
    """The schedule of ``specs`` dealt out over ``clients`` processes (see the module's docstring)."""
    warmup = [spec for spec in specs if spec.warmup]
    measured = [spec for spec in specs if not spec.warmup]
    clients = usable_clients(plan, len(measured), clients)
    if plan.load == "rate":
        offsets = arrival_offsets_ns(len(measured), plan.rate, plan.arrival, plan.burstiness, plan.seed)
        owner = [index % clients for index in range(len(measured))]
        workers = [1] * clients
    else:
        slots = max(1, min(plan.concurrency, len(measured)))
        offsets = [0] * len(measured)
        owner = [(index % slots) % clients for index in range(len(measured))]
        workers = [len(range(client, slots, clients)) for client in range(clients)]
    shares = []
    for client in range(clients):
        mine = [index for index, owned in enumerate(owner) if owned == client]
        shares.append(ClientShare(
            client=client,
            specs=(*warmup[client::clients], *(measured[index] for index in mine)),
            offsets_ns=tuple(offsets[index] for index in mine) if plan.load == "rate" else (),
            workers=workers[client],
        ))  # fmt: skip
    return shares


# --- the parent ------------------------------------------------------------------------------------------------


def run_in_clients(
    plan: LoadPlan, specs: Sequence[RequestSpec], clients: int, api_key: str | None = None,
    deadline_s: float | None = None, python: str = sys.executable,
) -> ClientsOutcome:  # fmt: skip
    """Run ``specs`` under ``plan`` from ``clients`` fresh processes; with ``deadline_s``, processes still running
    that many seconds after the start are ended (their requests become ``client_failed``)."""
    shares = split_load(plan, specs, clients)
    with tempfile.TemporaryDirectory(prefix="tokbench-clients-") as folder:
        started = time.monotonic()
        processes = [_start(Path(folder), plan, share, api_key, python) for share in shares]
        try:
            return _drive(Path(folder), shares, processes, None if deadline_s is None else started + deadline_s)
        finally:
            for process in processes:
                _end(process)


def _start(
    folder: Path, plan: LoadPlan, share: ClientShare, api_key: str | None, python: str
) -> subprocess.Popen[bytes]:
    job = folder / f"client-{share.client}.job.json"
    job.write_text(json.dumps({"plan": dataclasses.asdict(plan), "share": dataclasses.asdict(share),
                               "output": str(folder / f"client-{share.client}.json")}))  # fmt: skip
    with open(folder / f"client-{share.client}.err", "wb") as errors:
        process = subprocess.Popen(
            [python, "-m", CLIENT_MODULE, str(job)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
            start_new_session=True,  # a Ctrl-C reaches the parent alone, which ends every client
        )  # fmt: skip
    assert process.stdin is not None
    with contextlib.suppress(BrokenPipeError):
        process.stdin.write(json.dumps({"api_key": api_key}).encode() + b"\n")
        process.stdin.flush()
    return process


def _drive(
    folder: Path, shares: Sequence[ClientShare], processes: Sequence[subprocess.Popen[bytes]], deadline: float | None
) -> ClientsOutcome:
    ready = _await_ready(processes, deadline)
    start = perf_counter_ns() + START_LEAD_NS
    for process, is_ready in zip(processes, ready, strict=True):
        _send_line(process.stdin, f"{start}\n" if is_ready else "abort\n")
    for process in processes:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            process.wait(remaining)
        except subprocess.TimeoutExpired:
            _end(process)
    result = ClientsOutcome({}, {}, len(processes))
    for share, process, is_ready in zip(shares, processes, ready, strict=True):
        outcomes, why = _read_outcomes(folder, share, process)
        if not is_ready:
            why = "it was not ready (warmup unfinished) by the deadline" if process.returncode == 0 else why
        if why:
            result.failures.append(f"client process {share.client + 1} of {len(shares)}: {why}")
            outcomes = _failed_outcomes(share, start, why)
        result.outcomes.update(outcomes)
        result.client_of.update({spec.index: share.client for spec in share.specs})
    return result


def _await_ready(processes: Sequence[subprocess.Popen[bytes]], deadline: float | None) -> list[bool]:
    """Which clients said ``ready`` (a client that died or said nothing by the deadline did not)."""
    ready = [False] * len(processes)
    waiting = {process.stdout.fileno(): index for index, process in enumerate(processes) if process.stdout}
    while waiting:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            break
        readable, _, _ = select.select(list(waiting), [], [], remaining)
        for descriptor in readable:
            index = waiting.pop(descriptor)
            ready[index] = processes[index].stdout.readline() == READY  # type: ignore[union-attr]
    return ready


def _send_line(stream: IO[bytes] | None, line: str) -> None:
    if stream is None:
        return
    with contextlib.suppress(BrokenPipeError, OSError):
        stream.write(line.encode())
        stream.flush()


def _end(process: subprocess.Popen[bytes]) -> None:
    stop(process, TERMINATE_GRACE_S)  # its process group: SIGTERM, then SIGKILL
    for stream in (process.stdin, process.stdout):
        with contextlib.suppress(OSError):
            if stream is not None:
                stream.close()


def _read_outcomes(
    folder: Path, share: ClientShare, process: subprocess.Popen[bytes]
) -> tuple[dict[int, StreamOutcome], str]:
    """The client's outcomes, or why there are none (its exit and the tail of its error output)."""
    path = folder / f"client-{share.client}.json"
    if process.returncode == 0 and path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return {int(item.pop("index")): StreamOutcome(**item) for item in data["outcomes"]}, ""
        except (OSError, ValueError, KeyError, TypeError) as error:
            return {}, f"its results could not be read ({error})"
    tail = (folder / f"client-{share.client}.err").read_bytes()[-STDERR_TAIL_CHARS:].decode("utf-8", "replace")
    code = process.returncode
    how = f"ended by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
    detail = " ".join(tail.split())[-300:]
    return {}, f"{how} without its results" + (f": {detail}" if detail else "")


def _failed_outcomes(share: ClientShare, start_ns: int, why: str) -> dict[int, StreamOutcome]:
    """Every request of a client that failed, recorded at its intended instant (so the run's window stays the
    schedule's), as ``client_failed``."""
    offsets = dict(zip((spec.index for spec in share.measured), share.offsets_ns, strict=False))
    failed = {}
    for spec in share.specs:
        instant = start_ns + offsets.get(spec.index, 0)
        failed[spec.index] = StreamOutcome(intended_ns=instant, sent_ns=instant, end_ns=instant,
                                           status="client_failed", error=why[:300])  # fmt: skip
    return failed


# --- the client process ----------------------------------------------------------------------------------------


def plan_from_data(data: dict[str, Any]) -> LoadPlan:
    fields = dict(data)
    fields["endpoint"] = Endpoint(**fields["endpoint"])
    fields["stream_options"] = tuple((str(name), bool(value)) for name, value in fields["stream_options"])
    return LoadPlan(**fields)


def share_from_data(data: dict[str, Any]) -> ClientShare:
    specs = tuple(RequestSpec(**spec) for spec in data["specs"])
    return ClientShare(int(data["client"]), specs, tuple(data["offsets_ns"]), int(data["workers"]))


async def serve_share(runner: LoadRunner, share: ClientShare) -> None:
    """Warm up, say ready, wait for the start instant on stdin, send the share; every outcome is in ``runner``."""
    warmup = [spec for spec in share.specs if spec.warmup]
    measured = share.measured
    plan = runner.plan
    try:
        if warmup:
            await runner.closed_loop(warmup, share.workers if plan.load == "concurrency" else 1)
        await runner.preconnect()
        sys.stdout.buffer.write(READY)
        sys.stdout.buffer.flush()
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if not line.strip().isdigit():  # the parent gave up (another client failed to start, or a Ctrl-C)
            return
        start = int(line)
        if plan.load == "rate":
            await runner.send_at(measured, [start + offset for offset in share.offsets_ns])
        else:
            await runner.wait_until(start)
            await runner.closed_loop(measured, share.workers)
    finally:
        runner.pool.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print(f"usage: python -m {CLIENT_MODULE} JOB.json (started by tokbench, not by hand)", file=sys.stderr)
        return 2
    job = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    secrets = json.loads(sys.stdin.readline() or "{}")
    runner = LoadRunner(plan_from_data(job["plan"]), secrets.get("api_key"))
    asyncio.run(serve_share(runner, share_from_data(job["share"])))
    output = Path(job["output"])
    partial = output.with_suffix(".partial")
    outcomes = [{"index": index, **dataclasses.asdict(outcome)} for index, outcome in runner.outcomes.items()]
    partial.write_text(json.dumps({"outcomes": outcomes}), encoding="utf-8")
    partial.replace(output)  # whole or absent: the parent never reads half a file
    return 0


if __name__ == "__main__":
    sys.exit(main())
