"""kombu's transports with two fixes: the filesystem transport (the embedded default's broker)
publishes atomically, and the Redis transport reuses its publishing client.

kombu writes a message by opening `<time>_<uuid>.<queue>.msg` and then writing it; a worker
polling the folder in between moves and reads an empty file and dies on the JSON error. Here the
message is written under a name the reader ignores (`.tmp` suffix) and renamed into place, which
is atomic within the folder. Selected by `CELERY_BROKER_TRANSPORT` in settings when
`CELERY_BROKER_URL` is `filesystem://`; `RedisTransport` when it is `redis://`.
"""

import os
import uuid
from contextlib import contextmanager
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem, redis
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + ".tmp"
        try:
            with open(partial, "wb") as fh:
                fh.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel


class RedisChannel(redis.Channel):
    """kombu's Redis channel builds a new `redis.Redis` client, with its table of a few hundred
    response callbacks, for every message it publishes (`conn_or_acquire`); this one builds it
    once per channel and reuses it. A client takes a pooled connection for each command, so
    sharing it is what redis-py intends."""

    _publisher = None

    @contextmanager
    def conn_or_acquire(self, client=None):
        if client:
            yield client
            return
        if self._publisher is None:
            self._publisher = self._create_client()
        yield self._publisher


class RedisTransport(redis.Transport):
    Channel = RedisChannel
