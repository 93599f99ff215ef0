import logging

import orjson

from importer.logs import formatter


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("importer.batches", logging.WARNING, __file__, 1, message, (), None)


def test_json_format_is_one_object_per_line():
    line = formatter("json").format(record("chunk 7 failed"))
    assert "\n" not in line
    parsed = orjson.loads(line)
    assert (parsed["level"], parsed["logger"], parsed["message"]) == (
        "WARNING",
        "importer.batches",
        "chunk 7 failed",
    )
    assert parsed["time"]


def test_text_format_is_readable():
    assert formatter("text").format(record("hello")).endswith("WARNING importer.batches: hello")
