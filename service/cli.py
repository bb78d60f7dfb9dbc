"""stockctl: the operator's command line for the stock reservation service.

Two kinds of commands:
- through the gRPC API (STOCK_ADDRESS / --address; STOCK_ADMIN_TOKEN / --token for the operator
  calls): `stock`, `reservation`, `adjust`, `set`, `safety`, `health`. Changes go through the
  service like any other call, so the engine decides, the ledger records who/what/why and the
  cache is invalidated.
- reading PostgreSQL directly (STOCK_DATABASE_URL / --database-url), read-only, in one
  repeatable-read snapshot: `ledger` (the audit trail of an item) and `reconcile` (do the
  counters agree with the ledger and with the active holds?); and one maintenance command
  that writes there, `archive-ledger` (service/ledger_archive.py).

Output is for people by default; `--json` prints one JSON document for machines.
Exit codes: 0 done; 1 the answer is bad news (reconcile found differences, health not
SERVING); 2 usage error; 3 the call failed (gRPC status or database error).

Run as `stockctl ...` or `python -m service.cli ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service import ledger_archive
from service.audit import ITEM_AUDIT_STATEMENT, JOURNAL_LOG_OPERATIONS
from service.gen.stock.v1 import stock_pb2, stock_pb2_grpc

ADDRESS_DEFAULT = "127.0.0.1:50051"
RPC_TIMEOUT_S_DEFAULT = 5.0
# Reconcile scans whole tables; give it longer than one RPC but still a bound.
DATABASE_TIMEOUT_S_DEFAULT = 60.0
LEDGER_LIMIT_DEFAULT = 50
LEDGER_LIMIT_MAX = 10_000
# Differences listed in full; the counts always cover all of them.
RECONCILE_SHOWN_MAX = 1_000
ACTOR_BYTES_MAX = 128  # the engine's ACTOR_BYTES_MAX (the CLI must not need the native module)
REASON_BYTES_MAX = 256  # the engine's REASON_BYTES_MAX, for the reason archive-ledger writes

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_FAILURE = 3

TOKEN_METADATA = "authorization"
ACTOR_METADATA = "x-stock-actor"
# A retry with the same request id is safe for these codes: the call may or may not have landed.
RETRY_SAFE_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)

STATUS_NAMES = {
    stock_pb2.RESERVATION_STATUS_ACTIVE: "active",
    stock_pb2.RESERVATION_STATUS_COMMITTED: "committed",
    stock_pb2.RESERVATION_STATUS_RELEASED: "released",
    stock_pb2.RESERVATION_STATUS_EXPIRED: "expired",
}


class CommandFailed(Exception):
    """The command could not do its job; the message says why, `payload` is its JSON form."""

    def __init__(self, message: str, payload: dict[str, Any]):
        super().__init__(message)
        self.payload = payload


@dataclass
class Outcome:
    """What a command found: `data` for --json, `text` for people, and the exit code."""

    data: Any
    text: str
    exit_code: int = EXIT_OK


# ---- read-only SQL (PostgreSQL schema: service/migrations) ------------------------------------
# These are operator reads, never run by the service; they live here so the CLI needs no
# running service. The item audit (which Locust's database check reads as well) and the
# journal log's backlog are in service/audit.py.

LEDGER_ROWS = """
SELECT id, lsn, at_ms, kind, delta_on_hand, delta_reserved, on_hand_after, reserved_after,
       delta_safety, safety_after, reservation_id, order_id, request_id, reason, actor
  FROM ledger WHERE sku = $1 AND location = $2
 ORDER BY stamp DESC, id DESC LIMIT $3
"""

ITEM_ROW = ("SELECT on_hand, reserved, safety_stock FROM items"
            " WHERE sku = $1 AND location = $2")

# Items whose counters differ from their ledger sums or from their active holds, from the
# audit statement Locust's database check reads too.
RECONCILE_ITEMS = (f"SELECT * FROM ({ITEM_AUDIT_STATEMENT}) audit"
                   " WHERE counters_differ OR holds_differ ORDER BY location, sku")
# What a difference shows, of the audit's columns.
COUNTERS_VS_LEDGER = ("sku", "location", "on_hand", "reserved", "safety_stock",
                      "ledger_on_hand", "ledger_reserved", "ledger_safety_stock")
RESERVED_VS_HOLDS = ("sku", "location", "reserved", "held")

# Each ledger row must continue from the previous row of its item: a gap means a lost change.
# Rows are in change order by (stamp, id): batches written at once may get their ids in either
# order (docs/PERSISTENCE.md, "Parallel writers").
RECONCILE_CHAIN = """
SELECT sku, location, id, kind, previous_on_hand, delta_on_hand, on_hand_after,
       previous_reserved, delta_reserved, reserved_after, previous_safety, delta_safety,
       safety_after
  FROM (SELECT sku, location, id, kind, delta_on_hand, on_hand_after, delta_reserved,
               reserved_after, delta_safety, safety_after,
               coalesce(lag(on_hand_after) OVER w, 0) AS previous_on_hand,
               coalesce(lag(reserved_after) OVER w, 0) AS previous_reserved,
               coalesce(lag(safety_after) OVER w, 0) AS previous_safety
          FROM ledger WINDOW w AS (PARTITION BY sku, location ORDER BY stamp, id)) chained
 WHERE previous_on_hand + delta_on_hand <> on_hand_after
    OR previous_reserved + delta_reserved <> reserved_after
    OR previous_safety + delta_safety <> safety_after
 ORDER BY location, sku, id
"""

ITEM_COUNT = "SELECT count(*) FROM items"


# ---- gRPC helpers -----------------------------------------------------------------------------


def metadata(args: argparse.Namespace, *, operator: bool) -> list[tuple[str, str]]:
    pairs = [(ACTOR_METADATA, args.actor)]
    if operator:
        if not args.token:
            raise CommandFailed(
                "an admin token is required: --token or STOCK_ADMIN_TOKEN",
                {"error": {"code": "NO_TOKEN", "message": "admin token required"}},
            )
        pairs.append((TOKEN_METADATA, f"Bearer {args.token}"))
    return pairs


def call(args: argparse.Namespace, invoke: Callable[[grpc.Channel], Any]) -> Any:
    """Runs one RPC on a fresh channel; a gRPC failure becomes CommandFailed."""
    with grpc.insecure_channel(args.address) as channel:
        try:
            return invoke(channel)
        except grpc.RpcError as error:
            raise rpc_failure(error, getattr(args, "request_id", None)) from error


def rpc_failure(error: grpc.RpcError, request_id: str | None) -> CommandFailed:
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = error.details() if hasattr(error, "details") else str(error)
    text = f"{code.name}: {message}"
    payload: dict[str, Any] = {"error": {"code": code.name, "message": message}}
    if request_id and code in RETRY_SAFE_CODES:
        text += (f"\nthe change may or may not have been applied; retry with "
                 f"--request-id {request_id} to apply it exactly once")
        payload["error"]["request_id"] = request_id
    return CommandFailed(text, payload)


def level_dict(level: stock_pb2.StockLevel) -> dict[str, Any]:
    return {"sku": level.sku, "location": level.location, "on_hand": level.on_hand,
            "reserved": level.reserved, "available": level.available,
            "safety_stock": level.safety_stock}


def line_dict(line: stock_pb2.Line) -> dict[str, Any]:
    return {"sku": line.sku, "location": line.location, "quantity": line.quantity}


def format_ms(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, UTC).isoformat(timespec="milliseconds")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(header)] + [len(row[i]) for row in cells])
              for i, header in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def levels_outcome(levels: Sequence[stock_pb2.StockLevel]) -> Outcome:
    data = [level_dict(level) for level in levels]
    rows = [(d["sku"], d["location"] or '""', d["on_hand"], d["reserved"], d["safety_stock"],
             d["available"]) for d in data]
    headers = ("SKU", "LOCATION", "ON_HAND", "RESERVED", "SAFETY", "AVAILABLE")
    return Outcome(data, table(headers, rows))


# ---- gRPC commands ----------------------------------------------------------------------------


def command_stock(args: argparse.Namespace) -> Outcome:
    request = stock_pb2.GetStockRequest(skus=args.skus, location=args.location)
    response = call(args, lambda channel: stock_pb2_grpc.StockServiceStub(channel).GetStock(
        request, timeout=args.timeout, metadata=metadata(args, operator=False)))
    outcome = levels_outcome(response.levels)
    missing = sorted(set(args.skus) - {level.sku for level in response.levels})
    if missing:
        outcome.text += f"\nunknown at location {args.location!r}: {', '.join(missing)}"
    return outcome


def command_reservation(args: argparse.Namespace) -> Outcome:
    request = stock_pb2.GetReservationRequest(reservation_id=args.reservation_id)
    found = call(args, lambda channel: stock_pb2_grpc.StockServiceStub(channel).GetReservation(
        request, timeout=args.timeout, metadata=metadata(args, operator=False)))
    expires = found.expires_at.ToDatetime(tzinfo=UTC).isoformat(timespec="milliseconds")
    data = {"reservation_id": found.reservation_id, "order_id": found.order_id,
            "status": STATUS_NAMES.get(found.status, "unspecified"), "expires_at": expires,
            "lines": [line_dict(line) for line in found.lines],
            "committed_lines": [line_dict(line) for line in found.committed_lines]}
    text = [f"reservation {data['reservation_id']}  order {data['order_id']}  "
            f"status {data['status']}  expires {expires}",
            table(("SKU", "LOCATION", "HELD", "COMMITTED"), [
                (line.sku, line.location or '""', line.quantity,
                 committed_quantity(found, line)) for line in found.lines])]
    return Outcome(data, "\n".join(text))


def committed_quantity(found: stock_pb2.Reservation, line: stock_pb2.Line) -> int:
    return sum(c.quantity for c in found.committed_lines
               if (c.sku, c.location) == (line.sku, line.location))


def command_adjust(args: argparse.Namespace) -> Outcome:
    request = stock_pb2.AdjustRequest(request_id=args.request_id, sku=args.sku,
                                      location=args.location, delta=args.delta,
                                      reason=args.reason)
    response = call(args, lambda channel: stock_pb2_grpc.StockServiceStub(channel).Adjust(
        request, timeout=args.timeout, metadata=metadata(args, operator=True)))
    return changed_outcome(args, response)


def command_set(args: argparse.Namespace) -> Outcome:
    request = stock_pb2.SetStockRequest(request_id=args.request_id, sku=args.sku,
                                        location=args.location, on_hand=args.on_hand,
                                        reason=args.reason)
    if args.expected is not None:
        request.expected_on_hand = args.expected
    response = call(args, lambda channel: stock_pb2_grpc.StockServiceStub(channel).SetStock(
        request, timeout=args.timeout, metadata=metadata(args, operator=True)))
    return changed_outcome(args, response)


def command_safety(args: argparse.Namespace) -> Outcome:
    request = stock_pb2.SetSafetyStockRequest(request_id=args.request_id, sku=args.sku,
                                              location=args.location,
                                              safety_stock=args.safety_stock, reason=args.reason)
    response = call(args, lambda channel: stock_pb2_grpc.StockServiceStub(
        channel).SetSafetyStock(request, timeout=args.timeout,
                                metadata=metadata(args, operator=True)))
    return changed_outcome(args, response)


def changed_outcome(args: argparse.Namespace, response: stock_pb2.AdjustResponse) -> Outcome:
    outcome = levels_outcome([response.level])
    outcome.data = {"request_id": args.request_id, "level": outcome.data[0]}
    outcome.text = f"request {args.request_id}\n{outcome.text}"
    return outcome


def command_health(args: argparse.Namespace) -> Outcome:
    request = health_pb2.HealthCheckRequest(service=args.service)
    response = call(args, lambda channel: health_pb2_grpc.HealthStub(channel).Check(
        request, timeout=args.timeout))
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    serving = response.status == health_pb2.HealthCheckResponse.SERVING
    return Outcome({"address": args.address, "service": args.service, "status": status},
                   f"{args.address} {args.service or '(overall)'}: {status}",
                   EXIT_OK if serving else EXIT_FINDINGS)


# ---- PostgreSQL commands ----------------------------------------------------------------------


def database_url(args: argparse.Namespace) -> str:
    if not args.database_url:
        raise CommandFailed("a database is required: --database-url or STOCK_DATABASE_URL",
                            {"error": {"code": "NO_DATABASE", "message": "database required"}})
    return args.database_url


async def connect(args: argparse.Namespace) -> asyncpg.Connection:
    """A connection to the database the options name; CommandFailed if there is none."""
    try:
        return await asyncpg.connect(database_url(args), timeout=args.timeout,
                                     command_timeout=args.database_timeout)
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        raise database_failure(error) from error


async def read_snapshot(args: argparse.Namespace, queries: Sequence[tuple[str, tuple]]) -> list:
    """Runs read-only queries in one repeatable-read snapshot: a consistent set of batches,
    even while the service keeps writing."""
    connection = await connect(args)
    try:
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            return [await connection.fetch(sql, *params) for sql, params in queries]
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        raise database_failure(error) from error
    finally:
        await connection.close()


def database_failure(error: BaseException) -> CommandFailed:
    message = f"{type(error).__name__}: {error}"
    return CommandFailed(f"database: {message}",
                         {"error": {"code": "DATABASE", "message": message}})


def command_ledger(args: argparse.Namespace) -> Outcome:
    entries, item, logged = asyncio.run(read_snapshot(args, [
        (LEDGER_ROWS, (args.sku, args.location, args.limit)),
        (ITEM_ROW, (args.sku, args.location)),
        (JOURNAL_LOG_OPERATIONS, ()),
    ]))
    rows = [dict(row) for row in reversed(entries)]  # oldest first reads like a story
    current = dict(item[0]) if item else None
    data = {"sku": args.sku, "location": args.location, "item": current, "entries": rows,
            "journal_log_operations": int(logged[0][0])}
    header = (f"{args.sku} at {args.location or 'default location'}: "
              + (f"on_hand {current['on_hand']} reserved {current['reserved']}"
                 f" safety_stock {current['safety_stock']}" if current else "no such item"))
    body = table(
        ("ID", "AT (UTC)", "KIND", "D_ON_HAND", "D_RESERVED", "D_SAFETY", "ON_HAND", "RESERVED",
         "SAFETY", "RESERVATION", "ORDER", "REQUEST", "ACTOR", "REASON"),
        [(r["id"], format_ms(r["at_ms"]), r["kind"], signed(r["delta_on_hand"]),
          signed(r["delta_reserved"]), signed(r["delta_safety"]), r["on_hand_after"],
          r["reserved_after"], r["safety_after"], r["reservation_id"], r["order_id"],
          r["request_id"], r["actor"], r["reason"])
         for r in rows])
    shown = f"last {len(rows)} entries (--limit {args.limit})"
    if data["journal_log_operations"]:
        shown += (f"; {data['journal_log_operations']} operations are durable in the journal"
                  " log but not yet in the tables (newer entries may follow)")
    return Outcome(data, f"{header}\n{shown}\n{body}")


def command_archive_ledger(args: argparse.Namespace) -> Outcome:
    async def run() -> ledger_archive.Archived:
        connection = await connect(args)
        try:
            return await ledger_archive.archive(connection, args.before, args.out,
                                                reason=args.reason, actor=args.actor,
                                                dry_run=args.dry_run)
        except (ledger_archive.ArchiveRefused, FileExistsError) as error:
            raise CommandFailed(f"nothing archived: {error}",
                                {"error": {"code": "REFUSED", "message": str(error)}}) from error
        except ledger_archive.ArchiveOutcomeUnknown as error:
            raise CommandFailed(str(error),
                                {"error": {"code": "UNKNOWN", "message": str(error)}}) from error
        except (OSError, asyncpg.PostgresError, TimeoutError) as error:
            raise CommandFailed(f"nothing archived: {type(error).__name__}: {error}",
                                {"error": {"code": "DATABASE", "message": str(error)}}) from error
        finally:
            await connection.close()

    done = asyncio.run(run())
    data = {"before_ms": done.before_ms, "rows": done.rows, "items": done.items,
            "out": str(done.path) if done.path else None, "dry_run": args.dry_run}
    cutoff = format_ms(done.before_ms)
    if not done.rows:
        return Outcome(data, f"no ledger row is dated before {cutoff}: nothing archived")
    if args.dry_run:
        return Outcome(data, f"would archive {done.rows} ledger rows of {done.items} items"
                             f" dated before {cutoff} (dry run: nothing written)")
    return Outcome(data, f"archived {done.rows} ledger rows of {done.items} items dated before"
                         f" {cutoff} to {done.path}; each of those items' ledger now starts"
                         " with one 'opening' row carrying their sums")


def signed(value: int) -> str:
    return f"{value:+d}"


def command_reconcile(args: argparse.Namespace) -> Outcome:
    differing, chain, count, logged = asyncio.run(read_snapshot(args, [
        (RECONCILE_ITEMS, ("%",)), (RECONCILE_CHAIN, ()), (ITEM_COUNT, ()),
        (JOURNAL_LOG_OPERATIONS, ()),
    ]))
    findings = {
        "counters_vs_ledger": [{name: row[name] for name in COUNTERS_VS_LEDGER}
                               for row in differing if row["counters_differ"]],
        "reserved_vs_active_holds": [{name: row[name] for name in RESERVED_VS_HOLDS}
                                     for row in differing if row["holds_differ"]],
        "ledger_chain_breaks": [dict(row) for row in chain],
    }
    total = sum(len(rows) for rows in findings.values())
    data = {"items_checked": count[0][0], "differences": total,
            "journal_log_operations": int(logged[0][0]),
            **{name: rows[:RECONCILE_SHOWN_MAX] for name, rows in findings.items()}}
    text = [f"{data['items_checked']} items checked, {total} difference(s)"]
    if data["journal_log_operations"]:
        text.append(f"{data['journal_log_operations']} operations are durable in the journal"
                    " log but not yet in the tables (projected once bulk load pauses): a"
                    " difference may be theirs; run again later")
    text += [reconcile_section(name, rows) for name, rows in findings.items() if rows]
    return Outcome(data, "\n".join(text), EXIT_FINDINGS if total else EXIT_OK)


def reconcile_section(name: str, rows: list[dict[str, Any]]) -> str:
    shown = rows[:RECONCILE_SHOWN_MAX]
    more = f"\n... and {len(rows) - len(shown)} more" if len(rows) > len(shown) else ""
    headers = list(shown[0].keys())
    body = table([h.upper() for h in headers],
                 [["NULL" if row[h] is None else row[h] for h in headers] for row in shown])
    return f"\n{name}: {len(rows)}\n{body}{more}"


# ---- argument parsing -------------------------------------------------------------------------


def cutoff_ms(raw: str) -> int:
    """An archive cutoff: epoch milliseconds, or an ISO 8601 time (UTC unless it says)."""
    if raw.isdigit():
        return int(raw)
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time or epoch ms: {raw!r}") from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def archive_reason(raw: str) -> str:
    if not raw.strip() or len(raw.encode()) > REASON_BYTES_MAX:
        raise argparse.ArgumentTypeError(f"must be 1..{REASON_BYTES_MAX} bytes")
    return raw


def positive_limit(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= LEDGER_LIMIT_MAX:
        raise argparse.ArgumentTypeError(f"must be 1..{LEDGER_LIMIT_MAX}")
    return value


def default_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"stockctl:{user}"[:ACTOR_BYTES_MAX]


def common_options(*, defaults: bool) -> argparse.ArgumentParser:
    """Options accepted before or after the command. Only the top level carries defaults, so
    an option given before the command is not overwritten by the command's parser."""
    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--address", default=default(
        os.environ.get("STOCK_ADDRESS", ADDRESS_DEFAULT)),
        help="gRPC host:port (env STOCK_ADDRESS)")
    common.add_argument("--token", default=default(os.environ.get("STOCK_ADMIN_TOKEN", "")),
                        help="admin token for adjust/set/safety (env STOCK_ADMIN_TOKEN)")
    common.add_argument("--database-url", default=default(
        os.environ.get("STOCK_DATABASE_URL", "")),
        help="PostgreSQL DSN for ledger/reconcile (env STOCK_DATABASE_URL)")
    common.add_argument("--actor", default=default(os.environ.get("STOCK_ACTOR", default_actor())),
                        help="who is acting, recorded in the ledger (env STOCK_ACTOR)")
    common.add_argument("--timeout", type=float, default=default(RPC_TIMEOUT_S_DEFAULT),
                        help="seconds per RPC or database connect")
    common.add_argument("--database-timeout", type=float,
                        default=default(DATABASE_TIMEOUT_S_DEFAULT),
                        help="seconds per SQL statement")
    common.add_argument("--json", action="store_true", default=default(False),
                        help="print one JSON document")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stockctl", description=__doc__.split("\n\n")[0],
                                     parents=[common_options(defaults=True)])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    later = common_options(defaults=False)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return subparsers.add_parser(name, help=help_text, parents=[later])

    stock = command("stock", "levels of one or more skus")
    stock.add_argument("skus", nargs="+", metavar="SKU")
    stock.add_argument("--location", default="")
    stock.set_defaults(run=command_stock)

    reservation = command("reservation", "one reservation")
    reservation.add_argument("reservation_id", metavar="ID")
    reservation.set_defaults(run=command_reservation)

    adjust = command("adjust", "goods in (+) or written off (-)")
    adjust.add_argument("sku", metavar="SKU")
    adjust.add_argument("delta", type=int, metavar="DELTA")
    add_change_options(adjust)
    adjust.set_defaults(run=command_adjust)

    set_stock = command("set", "a stock count: set on hand (compare-and-set)")
    set_stock.add_argument("sku", metavar="SKU")
    set_stock.add_argument("on_hand", type=int, metavar="ON_HAND")
    set_stock.add_argument("--expected", type=int, default=None,
                           help="refuse unless on hand is this now (ABORTED otherwise)")
    add_change_options(set_stock)
    set_stock.set_defaults(run=command_set)

    safety = command("safety", "set the safety stock: units kept back from sale (0: none)")
    safety.add_argument("sku", metavar="SKU")
    safety.add_argument("safety_stock", type=int, metavar="SAFETY_STOCK")
    add_change_options(safety)
    safety.set_defaults(run=command_safety)

    health = command("health", "gRPC health: exit 0 only when SERVING")
    health.add_argument("--service", default="", help="health service name ('' = overall)")
    health.set_defaults(run=command_health)

    ledger = command("ledger", "audit trail of one item (PostgreSQL)")
    ledger.add_argument("sku", metavar="SKU")
    ledger.add_argument("--location", default="")
    ledger.add_argument("--limit", type=positive_limit, default=LEDGER_LIMIT_DEFAULT)
    ledger.set_defaults(run=command_ledger)

    reconcile = command(
        "reconcile", "counters vs ledger and vs active holds (PostgreSQL); exit 1 if any")
    reconcile.set_defaults(run=command_reconcile)

    archive = command("archive-ledger", "move ledger rows dated before --before to a file;"
                      " each item keeps one 'opening' row with their sums (PostgreSQL)")
    archive.add_argument("--before", required=True, type=cutoff_ms, metavar="TIME",
                         help="ISO 8601 time (UTC unless it names a zone) or epoch"
                              " milliseconds; at least a day ago")
    archive.add_argument("--out", required=True, type=Path, metavar="FILE",
                         help="the archive to create (CSV; gzip if it ends in .gz); must not"
                              " exist")
    archive.add_argument("--reason", required=True, type=archive_reason,
                         help="why, recorded in each opening row")
    archive.add_argument("--dry-run", action="store_true",
                         help="count what would go; write and change nothing")
    archive.set_defaults(run=command_archive_ledger)
    return parser


def add_change_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--location", default="")
    parser.add_argument("--reason", required=True, help="why, recorded in the ledger")
    parser.add_argument("--request-id", default=None,
                        help="idempotency key; reuse it to retry a call that may have landed "
                             "(default: a new one, printed)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "request_id", "missing") is None:
        args.request_id = f"stockctl-{uuid.uuid4()}"
    try:
        outcome = args.run(args)
    except CommandFailed as failure:
        if args.json:
            print(json.dumps(failure.payload))
        print(f"stockctl {args.command}: {failure}", file=sys.stderr)
        return EXIT_FAILURE
    print(json.dumps(outcome.data, indent=2) if args.json else outcome.text)
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main())
