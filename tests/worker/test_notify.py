"""Waking a waiting request when its batch is done."""

from __future__ import annotations

import threading

import fakeredis

from importer.notify import PollingNotifier, RedisNotifier


def test_a_published_completion_wakes_the_waiter_without_asking_the_database_again():
    notifier = RedisNotifier(fakeredis.FakeRedis(), recheck_every=60)
    looks = []

    def is_done() -> bool:
        looks.append(1)
        # The waiter is registered and subscribed: now a worker finishes the batch.
        threading.Thread(target=notifier.publish_done, args=("cbbatch_1",)).start()
        return False

    assert notifier.wait_done("cbbatch_1", 30, is_done) is True
    assert len(looks) == 1  # woken by the message, not by a re-check


def test_one_subscription_serves_every_waiter_of_a_process():
    client = fakeredis.FakeRedis()
    notifier = RedisNotifier(client, recheck_every=60)
    waiting = threading.Barrier(3)
    results = {}

    def wait(batch_id: str) -> None:
        def is_done() -> bool:
            waiting.wait(10)
            return False

        results[batch_id] = notifier.wait_done(batch_id, 30, is_done)

    threads = [threading.Thread(target=wait, args=(f"cbbatch_{n}",)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    waiting.wait(10)  # both waiters registered and subscribed
    notifier.publish_done("cbbatch_2")
    notifier.publish_done("cbbatch_1")
    for thread in threads:
        thread.join(30)
    assert results == {"cbbatch_1": True, "cbbatch_2": True}
    assert client.pubsub_numpat() == 1


def test_waiters_give_up_at_their_timeout():
    assert RedisNotifier(fakeredis.FakeRedis()).wait_done("b", 0, lambda: False) is False
    assert PollingNotifier().wait_done("b", 0, lambda: False) is False


def test_already_done_returns_at_once():
    assert RedisNotifier(fakeredis.FakeRedis()).wait_done("b", 30, lambda: True) is True
    assert PollingNotifier().wait_done("b", 30, lambda: True) is True
