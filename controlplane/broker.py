"""kombu's filesystem transport (the embedded default's broker) with an atomic publish.

kombu writes a message by opening `<time>_<uuid>.<queue>.msg` and then writing it; a worker
polling the folder in between moves and reads an empty file and dies on the JSON error. Here the
message is written under a name the reader ignores (`.tmp` suffix) and renamed into place, which
is atomic within the folder. Selected by `CELERY_BROKER_TRANSPORT` in settings when
`CELERY_BROKER_URL` is `filesystem://`.
"""

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
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
