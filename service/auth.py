"""Operator authentication: Adjust and SetStock need `authorization: Bearer <STOCK_ADMIN_TOKEN>`.

Operator calls change on-hand stock outside any order, so they are refused with
UNAUTHENTICATED unless the caller shows the configured token. With no token configured the
service refuses every operator call: an unset variable must never mean "open to everyone".
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

import grpc

OPERATOR_METHODS = frozenset({
    "/stock.v1.StockService/Adjust",
    "/stock.v1.StockService/SetStock",
})
AUTHORIZATION_KEY = "authorization"
BEARER_PREFIX = "Bearer "


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, admin_token: str):
        self._expected = (BEARER_PREFIX + admin_token).encode() if admin_token else None

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if handler_call_details.method not in OPERATOR_METHODS:
            return await continuation(handler_call_details)
        refusal = self.refusal(handler_call_details.invocation_metadata or ())
        if refusal is None:
            return await continuation(handler_call_details)
        return refuse_with(refusal)

    def refusal(self, metadata) -> str | None:
        """Why the call is refused, or None if the token matches."""
        if self._expected is None:
            return "operator calls are disabled: the server has no STOCK_ADMIN_TOKEN"
        presented = [value for key, value in metadata if key == AUTHORIZATION_KEY]
        if not presented:
            return "operator call needs metadata 'authorization: Bearer <token>'"
        value = presented[0]
        value = value.encode() if isinstance(value, str) else value
        # Constant time, so the comparison does not leak how much of the token matched.
        if not hmac.compare_digest(value, self._expected):
            return "operator token is wrong"
        return None


def refuse_with(message: str) -> grpc.RpcMethodHandler:
    async def refuse(request, context: grpc.aio.ServicerContext):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    return grpc.unary_unary_rpc_method_handler(refuse)
