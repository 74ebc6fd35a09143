"""controlplane.broker: the embedded default's filesystem transport never hands a reader a
half-written message (kombu's own writes the file in place, so a fast poller can read it empty)."""

import threading

from kombu import Connection

from controlplane.broker import Transport


def folders(tmp_path):
    queue = tmp_path / "queue"
    queue.mkdir()
    (tmp_path / "control").mkdir()
    return {"data_folder_in": str(queue), "data_folder_out": str(queue), "store_processed": False,
            "control_folder": str(tmp_path / "control")}


def test_messages_are_published_atomically_under_a_concurrent_reader(tmp_path):
    options = {**folders(tmp_path), "polling_interval": 0}
    sent = 400
    received, errors = [], []
    with Connection("filesystem://", transport=Transport, transport_options=options) as writer_conn, \
            Connection("filesystem://", transport=Transport, transport_options=options) as reader_conn:
        writer, reader = writer_conn.SimpleQueue("q"), reader_conn.SimpleQueue("q")

        def write():
            for i in range(sent):
                writer.put({"n": i, "pad": "x" * 20000})

        thread = threading.Thread(target=write)
        thread.start()
        while len(received) < sent and not errors:
            try:
                message = reader.get(timeout=30)
            except Exception as exc:  # noqa: BLE001 - a decode error is what this test looks for
                errors.append(exc)
                break
            received.append(message.payload["n"])
            message.ack()
        thread.join()
        writer.close()
        reader.close()
    assert errors == []
    assert sorted(received) == list(range(sent))
    assert not list((tmp_path / "queue").glob("*.tmp"))
