"""STOCK_LOOP_NICE: the event loop thread, and only it, gets the niceness asked for; a refusal
leaves it running as it was started, with a warning."""

from __future__ import annotations

import errno
import logging
import os
import threading
from pathlib import Path

import grpc
import pytest
from conftest import create_database, drop_database, service_runner
from stock_helpers import unique

from service import loop_priority
from service.gen.stock.v1 import stock_pb2, stock_pb2_grpc

# Positive values: raising a niceness needs no privilege, so the tests run as any user.
NICE = 7


def nice_of(pid: int, tid: int) -> int:
    """A thread's niceness from /proc (field 19 of its stat line)."""
    fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[16])


def in_fresh_thread(function):
    """Runs `function` on a new thread (which inherits this one's niceness); its result and
    the thread's native id."""
    found = {}

    def body():
        found["result"] = function()
        found["tid"] = threading.get_native_id()

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    return found["result"], found["tid"]


def test_only_the_calling_thread_changes():
    before = loop_priority.thread_nice()
    barrier, done = threading.Event(), threading.Event()
    seen = {}

    def other_thread():
        seen["tid"] = threading.get_native_id()
        barrier.set()
        done.wait(10)

    bystander = threading.Thread(target=other_thread)
    bystander.start()
    barrier.wait(10)
    try:
        changed, tid = in_fresh_thread(
            lambda: (loop_priority.set_thread_nice(NICE), loop_priority.thread_nice()))
        assert changed == (True, NICE)
        assert loop_priority.thread_nice() == before
        assert nice_of(os.getpid(), seen["tid"]) == before
        assert tid != seen["tid"]
    finally:
        done.set()
        bystander.join()


def test_zero_leaves_the_inherited_niceness():
    def inherit_then_zero():
        loop_priority.set_thread_nice(NICE)
        return in_fresh_thread(lambda: (loop_priority.set_thread_nice(0),
                                        loop_priority.thread_nice()))[0]

    assert in_fresh_thread(inherit_then_zero)[0] == (True, NICE)


def test_a_refusal_is_a_warning_and_changes_nothing(monkeypatch, caplog):
    def refuse(which, who, value):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(loop_priority.os, "setpriority", refuse)
    with caplog.at_level(logging.WARNING, logger=loop_priority.__name__):
        assert in_fresh_thread(lambda: loop_priority.set_thread_nice(-10))[0] is False
    assert "refused" in caplog.text and "CAP_SYS_NICE" in caplog.text


def test_out_of_range_is_a_bug_not_a_silent_clamp():
    with pytest.raises(AssertionError):
        loop_priority.set_thread_nice(loop_priority.NICE_MAX + 1)


async def test_the_service_sets_its_loop_thread_and_leaves_grpcs():
    database_url = await create_database()
    runner = service_runner(database_url, unique("nice") + ":", STOCK_LOOP_NICE=str(NICE))
    try:
        await runner.start()
        pid = runner.process.pid
        threads = {int(tid): nice_of(pid, int(tid)) for tid in os.listdir(f"/proc/{pid}/task")}
        assert threads.pop(pid) == NICE  # the main thread runs the event loop
        assert threads and set(threads.values()) == {os.getpriority(os.PRIO_PROCESS, 0)}
        async with grpc.aio.insecure_channel(runner.address) as channel:
            stub = stock_pb2_grpc.StockServiceStub(channel)
            response = await stub.GetStock(stock_pb2.GetStockRequest(skus=["a"]), timeout=5)
        assert list(response.levels) == []
        assert runner.terminate() == 0, runner.log_tail()
    finally:
        runner.cleanup()
        await drop_database(database_url)
