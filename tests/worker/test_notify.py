"""Waking a waiting request when its batch is done."""

from __future__ import annotations

import threading

import fakeredis

from importer.notify import PollingNotifier, RedisNotifier


def test_redis_notifier_wakes_the_waiter_on_publish():
    client = fakeredis.FakeRedis()
    notifier = RedisNotifier(client)
    done = threading.Event()
    subscribed = threading.Event()
    original = client.pubsub

    def pubsub(**kwargs):
        ps = original(**kwargs)
        subscribe = ps.subscribe

        def subscribe_and_signal(*args):
            subscribe(*args)
            subscribed.set()

        ps.subscribe = subscribe_and_signal
        return ps

    client.pubsub = pubsub

    def finish():
        subscribed.wait(5)
        done.set()
        notifier.publish_done("cbbatch_1")

    threading.Thread(target=finish).start()
    assert notifier.wait_done("cbbatch_1", 5, done.is_set) is True


def test_waiters_give_up_at_their_timeout():
    assert RedisNotifier(fakeredis.FakeRedis()).wait_done("b", 0, lambda: False) is False
    assert PollingNotifier().wait_done("b", 0, lambda: False) is False


def test_already_done_returns_at_once():
    assert RedisNotifier(fakeredis.FakeRedis()).wait_done("b", 30, lambda: True) is True
    assert PollingNotifier().wait_done("b", 30, lambda: True) is True
