"""The embedded deployment's broker: kombu's filesystem transport, made safe to share.

kombu's filesystem transport keeps one file per message in a folder that the web
(producer) and the worker (consumer) processes share. As shipped, a producer creates
the file under its final name and then writes it, so a consumer polling the folder
can pick up an empty or half-written file; the ``JSONDecodeError`` that follows is
fatal to a Celery worker (kombu issue #1551). This transport closes that window and
keeps a bad file from ever stopping the consumer:

* a message is written under a temporary name the consumer never matches, then
  renamed into place (``os.replace`` is atomic on POSIX), so a message file is
  either absent or complete;
* a message file that cannot be read, is not JSON or is not a kombu message is
  logged and moved to ``<broker folder>/bad/``, and the consumer goes on with the
  next one;
* a consumer claims a message by removing its file (or moving it to the processed
  folder), which only one consumer can do, so no message is delivered twice;
* an exchange's binding table is created whole, for the same reason as messages.

Celery selects it with ``broker_transport`` (see ``worker/celery_app.py``); the
folder layout and the message file names are kombu's, so queue depths are still
counted from ``*.<queue>.msg`` names.
"""

from __future__ import annotations

import logging
import os
import uuid
from queue import Empty
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem, virtual
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

log = logging.getLogger(__name__)

#: Where message files that cannot be delivered are set aside (inside the folder).
BAD_FOLDER = "bad"
#: Files being written end with this and start with a dot: never "<...>.<queue>.msg".
PARTIAL_SUFFIX = ".part"


def _partial_name() -> str:
    return f".{uuid.uuid4().hex}{PARTIAL_SUFFIX}"


def _write_whole(folder: str, name: str, data: bytes) -> None:
    """Write ``data`` to ``folder/name`` so that no reader ever sees part of it."""
    partial = os.path.join(folder, _partial_name())
    try:
        with open(partial, "wb") as file:
            file.write(data)
        os.replace(partial, os.path.join(folder, name))
    except BaseException:
        try:
            os.remove(partial)
        except OSError:
            pass
        raise


class Channel(filesystem.Channel):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Bad message files that could not be moved: skipped, and reported once.
        self._stuck: set[str] = set()

    # kombu's filesystem Channel names the argument "payload", its base "message".
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        # kombu's name: consumers take messages in the order of the leading milliseconds.
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        try:
            _write_whole(self.data_folder_out, name, str_to_bytes(dumps(payload)))
        except OSError as exc:
            raise ChannelError(f"Cannot add message {name!r} to {self.data_folder_out}") from exc

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        wanted = f"{queue}.msg"
        folder = self.data_folder_in
        for name in sorted(os.listdir(folder)):
            if name.partition(".")[2] != wanted or name in self._stuck:
                continue
            path = os.path.join(folder, name)
            try:
                with open(path, "rb") as file:
                    payload = file.read()
            except FileNotFoundError:
                continue  # another consumer has taken it
            except OSError as exc:
                self._set_aside(path, f"cannot be read ({exc})")
                continue
            try:
                message = self._message_of(payload)
            except ValueError as exc:
                self._set_aside(path, str(exc))
                continue
            if self._claim(path, name):
                return message
        raise Empty()

    def _message_of(self, payload: bytes) -> dict[str, Any]:
        """The message a file holds; ValueError (saying why) if the consumer could not use it."""
        try:
            message: dict[str, Any] = loads(bytes_to_str(payload))
        except ValueError as exc:
            raise ValueError(f"is not JSON ({exc}; {len(payload)} bytes)") from exc
        try:
            # What the consumer makes of it: any error here would be raised in the worker.
            self.Message(message, channel=self)
        except Exception as exc:
            raise ValueError(f"is not a message ({type(exc).__name__}: {exc})") from exc
        return message

    def _claim(self, path: str, name: str) -> bool:
        """Take the message file away from the folder; False if another consumer did first."""
        try:
            if self.store_processed:
                os.replace(path, os.path.join(self.processed_folder, name))
            else:
                os.remove(path)
        except FileNotFoundError:
            return False
        return True

    def _set_aside(self, path: str, reason: str) -> None:
        bad = os.path.join(os.path.dirname(path), BAD_FOLDER)
        target = os.path.join(bad, os.path.basename(path))
        try:
            os.makedirs(bad, exist_ok=True)
            os.replace(path, target)
        except FileNotFoundError:
            return  # another consumer has set it aside
        except OSError:
            self._stuck.add(os.path.basename(path))
            log.exception(
                "broker message file %s %s, and could not be set aside: skipped from now on",
                path,
                reason,
            )
            return
        log.error("broker message file %s %s; set aside as %s", path, reason, target)

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        # kombu creates the table file empty and then writes it, outside its lock: a
        # process reading or binding meanwhile would find no JSON. Create it whole first.
        table = self._exchange_file(exchange)
        if not table.exists():
            self.control_folder.mkdir(parents=True, exist_ok=True)
            empty = self.control_folder / _partial_name()
            empty.write_bytes(b"[]")
            try:
                os.link(empty, table)  # fails if it exists: never replaces another's table
            except FileExistsError:
                pass
            finally:
                empty.unlink()
        super()._queue_bind(exchange, routing_key, pattern, queue)


class Transport(filesystem.Transport):
    """kombu's filesystem transport with whole-file writes and bad messages set aside."""

    Channel = Channel
    global_state = virtual.BrokerState()
