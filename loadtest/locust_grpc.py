"""gRPC calls from Locust users, each reported to Locust's statistics.

grpc.experimental.gevent.init_gevent() must have run before the first channel is made (the
locustfile does it on import), so that blocking gRPC calls yield to other greenlets.
"""

from __future__ import annotations

import time

import grpc

from service.gen.stock.v1 import stock_pb2_grpc

CALL_TIMEOUT_S = 5.0
REQUEST_TYPE = "grpc"

_stubs: dict[str, stock_pb2_grpc.StockServiceStub] = {}


def stub_for(target: str) -> stock_pb2_grpc.StockServiceStub:
    """One channel per target for the whole process: thousands of users share it."""
    stub = _stubs.get(target)
    if stub is None:
        stub = stock_pb2_grpc.StockServiceStub(grpc.insecure_channel(target))
        _stubs[target] = stub
    return stub


class Caller:
    """Makes calls and fires one Locust request event per call.

    Refusals the scenario expects (short stock, a hold that expired before its commit) are
    answers, not failures: they are reported under their own name, without an exception, so
    that Locust's failure count means "something the service must never do".
    """

    def __init__(self, environment, target: str, admin_token: str) -> None:
        self.environment = environment
        self.stub = stub_for(target)
        self.operator_metadata = (("authorization", f"Bearer {admin_token}"),)

    def call(self, name: str, request, *, operator: bool = False, refusals=()):
        """Returns (response, None) or (None, error); `error.code()` tells which."""
        method = getattr(self.stub, name)
        metadata = self.operator_metadata if operator else None
        started = time.perf_counter()
        try:
            response = method(request, timeout=CALL_TIMEOUT_S, metadata=metadata)
        except grpc.RpcError as error:
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            if error.code() in refusals:
                self._fire(f"{name} refused {error.code().name}", elapsed_ms, 0, None)
            else:
                self._fire(name, elapsed_ms, 0, error)
            return None, error
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        self._fire(name, elapsed_ms, response.ByteSize(), None)
        return response, None

    def _fire(self, name: str, elapsed_ms: float, length: int, exception) -> None:
        self.environment.events.request.fire(
            request_type=REQUEST_TYPE, name=name, response_time=elapsed_ms,
            response_length=length, exception=exception, context={})
