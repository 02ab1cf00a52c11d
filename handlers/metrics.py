"""CloudWatch metrics of every fan-out, as Embedded Metric Format records.

With ``spec.ENV_METRICS`` set to "1", each publish, each fan-out chunk, each
heartbeat run and each server publish writes one JSON line to stdout, its
Function dimension the handler function's name (``spec.Function.function``:
``publish``, ``fanout``, ``heartbeat``, ``server_publish``). Lambda ships stdout to the
function's log group as written (print output is never wrapped, even with
the JSON log format, unlike the logging module's records), and CloudWatch
Logs extracts the metrics from it: no PutMetricData call on the request
path, no extra permission, nothing to ship in the archive. The record follows
the Embedded Metric Format (EMF) specification:
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html

Written here rather than with aws-lambda-powertools' ``Metrics``, which
writes the same records: powertools is not in the Lambda runtime, so it would
have to ship in the archive, and its import costs far more than this module
(bench/metrics_import.py has the figures).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

from . import spec

logger = logging.getLogger("channel_server")

#: The dimensions: the server (the component's name), and the function.
SERVER, FUNCTION = "Server", "Function"
#: Every metric is aggregated per server, and per server and function.
DIMENSION_SETS = ((SERVER,), (SERVER, FUNCTION))
#: The Server dimension when the environment names no server.
DEFAULT_SERVER_NAME = "channel-server"

#: The metrics of one fan-out.
FANOUT_SIZE = "FanoutSize"  # the members it was for
DELIVERED = "Delivered"  # posts the management API accepted
GONE = "Gone"  # members found gone (410): removed, not failures
FAILED_DELIVERIES = spec.METRIC_FAILED_DELIVERIES  # failed after retries, or could not be queued
QUEUED = "Queued"  # handed to the fan-out queue
FANOUT_DURATION = "FanoutDuration"  # its wall time: queueing, posting, removing the gone
#: Each metric's CloudWatch unit, in the record's order.
UNITS = {
    FANOUT_SIZE: "Count",
    DELIVERED: "Count",
    GONE: "Count",
    FAILED_DELIVERIES: "Count",
    QUEUED: "Count",
    FANOUT_DURATION: "Milliseconds",
}


@dataclass(frozen=True)
class FanOut:
    """What one fan-out did. ``targets`` is the sum of the four outcomes."""

    targets: int
    delivered: int
    gone: int
    failed: int
    queued: int
    milliseconds: float

    def values(self) -> dict[str, float]:
        """The record's metric values, by metric name."""
        return {
            FANOUT_SIZE: self.targets,
            DELIVERED: self.delivered,
            GONE: self.gone,
            FAILED_DELIVERIES: self.failed,
            QUEUED: self.queued,
            FANOUT_DURATION: round(self.milliseconds, 3),
        }


def emf_record(function: str, server: str, fan_out: FanOut, timestamp_ms: int) -> dict[str, Any]:
    """One EMF record: the ``_aws`` metadata that tells CloudWatch what to
    extract, and, at the top level as the specification requires, every
    dimension and metric it names."""
    return {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": spec.METRICS_NAMESPACE,
                "Dimensions": [list(dimensions) for dimensions in DIMENSION_SETS],
                "Metrics": [{"Name": name, "Unit": unit} for name, unit in UNITS.items()],
            }],
        },
        SERVER: server,
        FUNCTION: function,
        **fan_out.values(),
    }


def write_stdout(text: str) -> None:
    """Lambda's way to CloudWatch Logs: one write, then a flush, so the
    record is one whole line however the stream buffers."""
    sys.stdout.write(text)
    sys.stdout.flush()


class Metrics:
    """Writes the fan-outs' records when ``enabled`` (``spec.ENV_METRICS``),
    for ``server`` (the Server dimension, ``spec.ENV_SERVER_NAME``), each as
    one line through ``write`` (default: :func:`write_stdout`)."""

    def __init__(self, enabled: bool, *, server: str = DEFAULT_SERVER_NAME, write: Callable[[str], Any] | None = None):
        self.enabled = enabled
        self.server = server
        self._write = write or write_stdout

    def fan_out(self, function: str, fan_out: FanOut) -> None:
        """Record one fan-out of ``function``. Never raises: a metric that
        cannot be written is logged and lost, the request goes on."""
        if not self.enabled:
            return
        try:
            record = emf_record(function, self.server, fan_out, int(time.time() * 1000))
            self._write(json.dumps(record, separators=(",", ":")) + "\n")
        except Exception:
            logger.exception("writing the metrics record failed", extra={"function": function})
