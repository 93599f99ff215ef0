"""What goes to the broker: one message per chunk on its lane's queue, which tells a
person watching the tasks (Flower, the logs) whose work it is."""

from __future__ import annotations

import base64
import json

from importer.broker import CeleryBroker, ChunkMessage
from importer.models import Lane


def queued(settings) -> list[dict]:
    """The embedded broker's message files, decoded: (queue, headers, args)."""
    found = []
    for path in sorted(settings.broker_folder.glob("*.msg")):
        message = json.loads(path.read_text())
        body = json.loads(base64.b64decode(message["body"]))
        queue = path.name.rsplit(".", 2)[-2]
        found.append({"queue": queue, "headers": message["headers"], "args": body[0]})
    return found


def test_each_chunk_goes_to_its_lane_and_names_its_batch_org_and_lane(settings):
    broker = CeleryBroker(settings)
    broker.send_chunks(
        [
            ChunkMessage(7, "cbbatch_a", "cborg_x", Lane.INTERACTIVE),
            ChunkMessage(8, "cbbatch_b", "cborg_y", Lane.BULK),
        ]
    )
    messages = sorted(queued(settings), key=lambda m: m["args"])  # files of one ms: any order
    assert [(m["queue"], m["args"]) for m in messages] == [("interactive", [7]), ("bulk", [8])]
    assert [m["headers"]["argsrepr"] for m in messages] == [
        "chunk=7 batch=cbbatch_a org=cborg_x lane=interactive",
        "chunk=8 batch=cbbatch_b org=cborg_y lane=bulk",
    ]
    assert all(m["headers"]["task"] == "worker.tasks.import_chunk" for m in messages)
    assert broker.depths() == {"interactive": 1, "bulk": 1, "webhooks": 0}
