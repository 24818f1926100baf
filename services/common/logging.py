"""JSON logs, one object per line, carrying the request id of the request being served."""

from __future__ import annotations

import logging
import sys
import time
from contextvars import ContextVar

import orjson

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": request_id_var.get(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        # orjson: one access-log line per request, a few times cheaper than json.dumps
        return orjson.dumps(payload, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def configure_logging(level: str, *, json_logs: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # neither format prints where a line was logged from: skip the stack walk that finds it
    # (the logging HOWTO's "Optimization"), a few µs of every request's access-log line
    logging._srcfile = None
    # nor the thread, process or multiprocessing names each record would otherwise look up
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own access log duplicates ours, which carries the request id
    logging.getLogger("uvicorn.access").disabled = True
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # pymilvus logs every failed call with its traceback at ERROR (~30,000 lines in a few seconds
    # of a Milvus outage under load); each failure reaches our code as an exception that becomes
    # a 503 with its own "dependency unavailable" line
    logging.getLogger("pymilvus").setLevel(max(logging.CRITICAL, root.level))
