"""read_ahead: every item in order, the producer's exception in the consumer, and a
consumer that stops early never leaves the thread running."""

from __future__ import annotations

import threading
import time

import pytest

from instmix.io.background import read_ahead


def test_items_arrive_in_order_and_are_produced_ahead():
    produced = []

    def source():
        for i in range(50):
            produced.append(i)
            yield i

    got = []
    for item in read_ahead(source(), depth=3):
        if item == 0:
            time.sleep(0.2)  # the thread fills the queue meanwhile
            assert len(produced) >= 3
        got.append(item)
    assert got == list(range(50))


def test_an_exception_of_the_source_is_raised_in_the_consumer():
    def source():
        yield 1
        raise ValueError("bad line 7")

    it = read_ahead(source())
    assert next(it) == 1
    with pytest.raises(ValueError, match="bad line 7"):
        next(it)


def test_a_consumer_that_stops_early_ends_the_thread():
    before = threading.active_count()

    def endless():
        i = 0
        while True:
            yield i
            i += 1

    it = read_ahead(endless(), depth=2)
    assert [next(it) for _ in range(5)] == [0, 1, 2, 3, 4]
    it.close()  # as when the consumer's loop ends by an exception
    assert threading.active_count() == before
