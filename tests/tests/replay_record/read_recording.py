"""Reads a shadowdiff recording with fastavro, a stock Avro reader, and prints it as JSON:
the header's `shadowdiff.recording` metadata on the first line, then one line per record
with the fields the test compares (bytes as base64, timestamps as Unix milliseconds)."""

import base64
import datetime
import json
import sys

import fastavro

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def millis(value):
    # fastavro turns timestamp-millis into an aware datetime.
    if isinstance(value, datetime.datetime):
        return (value - EPOCH) // datetime.timedelta(milliseconds=1)
    return value


def b64(data):
    return base64.b64encode(data).decode("ascii")


def headers(items):
    return [[h["name"], b64(h["value"])] for h in items]


with open(sys.argv[1], "rb") as f:
    reader = fastavro.reader(f)
    print(json.dumps({
        "codec": reader.codec,
        "schema_name": reader.writer_schema["name"],
        "recording": json.loads(reader.metadata["shadowdiff.recording"]),
    }))
    for record in reader:
        request, primary = record["request"], record["primary"]
        print(json.dumps({
            "request_id": request["request_id"],
            "timestamp_ms": millis(request["timestamp_ms"]),
            "method": request["method"],
            "path": request["path"],
            "query": request["query"],
            "route_template": request["route_template"],
            "request_headers": headers(request["headers"]),
            "request_body": b64(request["body"]["bytes"]),
            "primary_request_id": primary["request_id"],
            "primary_role": primary["role"],
            "primary_status": primary["status"],
            "primary_error": primary["error"],
            "primary_headers": headers(primary["headers"]),
            "primary_body_sha256": primary["body"]["sha256"].hex(),
            "primary_body_truncated": primary["body"]["truncated"],
            "primary_latency_us": primary["latency_us"],
        }))
