from __future__ import annotations

import json
import logging

from bot.ops.logs import JsonFormatter, correlation_id, redact


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("bot.test", logging.INFO, __file__, 1, message, args, None)


def test_one_json_object_per_line_with_the_correlation_id() -> None:
    token = correlation_id.set("trigger-123")
    try:
        line = JsonFormatter().format(record("rollout %s paused", "r1"))
    finally:
        correlation_id.reset(token)
    entry = json.loads(line)
    assert entry["msg"] == "rollout r1 paused"
    assert entry["correlation_id"] == "trigger-123"
    assert entry["level"] == "info" and entry["logger"] == "bot.test"


def test_secrets_never_reach_the_log() -> None:
    text = (
        "token xoxb-1234-5678-abcdef app xapp-1-A0-123 redis://:hunter2@redis:6379/0 "
        "https://x?password=hunter2&user=a"
    )
    line = JsonFormatter().format(record("%s", text))
    assert "hunter2" not in line and "abcdef" not in line and "xapp-1-A0" not in line
    assert redact("rediss://bot:s3cret@host/0") == "rediss://bot:***@host/0"
