"""Many threads share one engine: it must never oversell."""

import threading

from engine_helpers import NOW_MS, TTL_MS

from service.engine import Engine, ShortStock

THREADS = 8
ATTEMPTS_PER_THREAD = 2_000
UNITS = 500


def test_threads_racing_for_one_item_never_oversell():
    engine = Engine(journal_operations_max=1_000_000, reservations_active_max=100_000)
    engine.set_stock("hot", "", UNITS, None, NOW_MS)
    won = [0] * THREADS
    refused = [0] * THREADS
    failures: list[BaseException] = []
    start = threading.Barrier(THREADS + 1)

    def client(index: int) -> None:
        try:
            start.wait()
            for attempt in range(ATTEMPTS_PER_THREAD):
                try:
                    engine.reserve(f"t{index}-{attempt}", "", [("hot", "", 1)], TTL_MS, NOW_MS)
                    won[index] += 1
                except ShortStock as error:
                    assert error.shortfalls == [("hot", "", 1, 0)]
                    refused[index] += 1
                if attempt % 100 == 0:
                    # Interleave a detached call so threads also contend for the lock.
                    engine.take_journal(1_000)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    start.wait()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert sum(won) == UNITS
    assert sum(won) + sum(refused) == THREADS * ATTEMPTS_PER_THREAD
    [(_, _, on_hand, reserved, available, safety_stock)] = engine.get_stock(
        ["hot"], "", NOW_MS).levels
    assert (on_hand, reserved, available, safety_stock) == (UNITS, UNITS, 0, 0)
    assert engine.stats()["reservations_active"] == UNITS


def test_threads_committing_and_releasing_keep_the_books():
    engine = Engine(journal_operations_max=1_000_000)
    engine.set_stock("hot", "", UNITS, None, NOW_MS)
    committed = [0] * THREADS

    def client(index: int) -> None:
        for attempt in range(500):
            reservation_id = f"t{index}-{attempt}"
            try:
                engine.reserve(reservation_id, "", [("hot", "", 1)], TTL_MS, NOW_MS)
            except ShortStock:
                continue
            if attempt % 2:
                engine.commit(reservation_id, None, NOW_MS)
                committed[index] += 1
            else:
                engine.release(reservation_id, NOW_MS)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    [(_, _, on_hand, reserved, available, safety_stock)] = engine.get_stock(
        ["hot"], "", NOW_MS).levels
    assert (reserved, safety_stock) == (0, 0)
    assert available == on_hand
    assert on_hand == UNITS - sum(committed)
    assert on_hand >= 0
