"""The micro-batcher: concurrent queries share a batch, each gets its own answer."""

from __future__ import annotations

import asyncio
import threading

import pytest

from services.batching import MicroBatcher


def test_queries_arriving_while_a_batch_runs_go_together_in_the_next() -> None:
    release = threading.Event()
    batches: list[list[int]] = []

    def work(queries: list[int]) -> list[int]:
        batches.append(list(queries))
        if len(batches) == 1:
            release.wait(10)  # the first batch is slow: the others queue up meanwhile
        return [q * 10 for q in queries]

    sizes: list[int] = []
    batcher = MicroBatcher(work, max_batch=4, observe=sizes.append)

    async def scenario() -> list[int]:
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0.05)  # the first batch is running
        rest = [asyncio.ensure_future(batcher.submit(q)) for q in range(1, 7)]
        await asyncio.sleep(0.05)
        release.set()
        return await asyncio.gather(first, *rest)

    answers = asyncio.run(scenario())
    assert answers == [q * 10 for q in range(7)]  # each its own, in any batch
    assert batches == [[0], [1, 2, 3, 4], [5, 6]]  # arrival order, at most max_batch
    assert sizes == [1, 4, 2]


def test_a_failing_batch_fails_its_queries_and_the_next_batch_runs() -> None:
    def work(queries: list[int]) -> list[int]:
        if 13 in queries:
            raise ValueError("unlucky batch")
        return list(queries)

    batcher = MicroBatcher(work)

    async def scenario() -> int:
        with pytest.raises(ValueError, match="unlucky"):
            await batcher.submit(13)
        return await batcher.submit(7)

    assert asyncio.run(scenario()) == 7


def test_answers_at_hand_are_given_on_the_event_loop_and_the_rest_batched() -> None:
    threads: dict[int, str] = {}

    def work(queries: list[int]) -> list[int]:
        for query in queries:
            threads[query] = threading.current_thread().name
        return [-q for q in queries]

    def at_hand(query: int) -> int | None:
        if query % 2:
            return None
        threads[query] = threading.current_thread().name
        return query * 100

    batcher = MicroBatcher(work, at_hand=at_hand)

    async def scenario() -> list[int]:
        return await asyncio.gather(*(batcher.submit(q) for q in range(4)))

    assert asyncio.run(scenario()) == [0, -1, 200, -3]
    loop_thread = threading.main_thread().name
    assert [threads[q] == loop_thread for q in range(4)] == [True, False, True, False]
