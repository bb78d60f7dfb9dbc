"""The gRPC front: several grpc.aio servers in the one process, all on one port.

grpc.aio accepts the calls of each method one at a time per server: every acceptance is a
round trip through gRPC's completion-queue thread and a few turns of the event loop, and
meanwhile further calls wait inside gRPC before any handler runs. Under load that wait, not
the handlers, made most of the slow calls (docs/BENCHMARKS.md, "Where the slow calls wait").
With several servers listening on the same port (SO_REUSEPORT, which gRPC sets on Linux), the
kernel gives each new client connection to one of them and each accepts on its own, on the
same event loop: the handlers, the engine and everything else stay shared.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc

from service.loop_priority import set_thread_nice


class Front:
    """`acceptors` grpc.aio servers built alike (`register` adds the servicers to each)."""

    def __init__(self, acceptors: int, register: Callable[[grpc.aio.Server], None],
                 **server_arguments: Any):
        assert acceptors >= 1, "a front needs at least one server"
        self.servers = [grpc.aio.server(**server_arguments) for _ in range(acceptors)]
        for server in self.servers:
            register(server)

    def bind(self, listen: str) -> int:
        """Binds every server to `listen` (host:port); port 0 picks a free one, which the
        others then share. Returns the port. A unix socket cannot be shared this way (gRPC
        would unlink the first server's socket to bind the next), so it takes one server."""
        if is_unix_socket(listen) and len(self.servers) > 1:
            raise ValueError(f"{listen}: a unix socket is served by one gRPC server only")
        port = self.servers[0].add_insecure_port(listen)
        host = listen.rpartition(":")[0]
        for server in self.servers[1:]:
            if server.add_insecure_port(f"{host}:{port}") != port:
                raise RuntimeError(f"gRPC servers could not share port {port}")
        return port

    async def start(self, loop_nice: int = 0) -> None:
        """Starts every server, then gives the calling thread (the event loop's) niceness
        `loop_nice` (service/loop_priority.py): after gRPC has started its own threads, so
        that they keep theirs. 0 leaves it as it is."""
        for server in self.servers:
            await server.start()
        set_thread_nice(loop_nice)

    async def stop(self, grace: float | None) -> None:
        await asyncio.gather(*(server.stop(grace) for server in self.servers))

    async def wait_for_termination(self) -> None:
        await asyncio.gather(*(server.wait_for_termination() for server in self.servers))


def is_unix_socket(listen: str) -> bool:
    """Whether `listen` names a unix socket (gRPC's unix: and unix-abstract: schemes)."""
    return listen.startswith(("unix:", "unix-abstract:"))
