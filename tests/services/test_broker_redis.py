"""The Redis broker's publishing client is built once per channel (controlplane.broker), not once
per message as kombu's own channel does; what is published still arrives, in order."""

import os

import pytest
from kombu import Connection
from kombu.transport import redis

from controlplane.broker import RedisTransport

URL = os.environ.get("CELERY_BROKER_URL", "")
pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(not URL.startswith("redis://"), reason="needs CELERY_BROKER_URL pointing at Redis"),
]


@pytest.mark.parametrize("transport", [RedisTransport, "redis"])
def test_five_messages_arrive_in_order_through_one_publishing_client(monkeypatch, transport):
    built = []
    original = redis.Channel._create_client

    def counting(self, *args, **kwargs):
        built.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(redis.Channel, "_create_client", counting)
    with Connection(URL, transport=transport) as conn:
        queue = conn.SimpleQueue("cp-broker-test")
        queue.clear()  # the channel's first command: ours builds its one publishing client here
        built.clear()
        for i in range(5):
            queue.put({"i": i})
        published_with = len(built)
        received = []
        for _ in range(5):
            message = queue.get(timeout=5)
            received.append(message.payload)
            message.ack()
        queue.close()
    assert received == [{"i": i} for i in range(5)]
    if transport is RedisTransport:
        assert published_with == 0  # the channel's client, built once, published all five
    else:
        assert published_with >= 5  # kombu's own channel: a new client for every message
