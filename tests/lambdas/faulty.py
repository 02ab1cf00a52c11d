"""Handlers for local-mode tests of API Gateway behaviour our own handlers never
trigger: a rejected handshake, a crashing integration, a slow one."""

import json
import time


def _record(event):
    """Keep the event where the test can read it (RECORD_DIR, set by the test)."""
    import os

    folder = os.environ.get("RECORD_DIR")
    if folder:
        context = event["requestContext"]
        name = os.path.join(folder, f"{context['connectionId']}.{context['eventType']}.json")
        with open(name + ".part", "w") as file:
            json.dump(event, file)
        os.replace(name + ".part", name)  # the test sees the whole file or none


def connect(event, context):
    """Reject the handshake when the URL asks for it (``?reject=403``)."""
    _record(event)
    status = int((event.get("queryStringParameters") or {}).get("reject", 200))
    return {"statusCode": status, "body": "no entry" if status >= 300 else ""}


def disconnect(event, context):
    _record(event)
    return {"statusCode": 200}


def crash(event, context):
    raise RuntimeError("boom")


def slow(event, context):
    time.sleep(float(json.loads(event["body"]).get("seconds", 1.0)))
    return {"statusCode": 200}


def remember(event, context):
    """Echo what the runtime handed over: the event and part of the context."""
    import os

    import boto3

    endpoint = os.environ["CHANNEL_MANAGEMENT_ENDPOINT"]
    client = boto3.client("apigatewaymanagementapi", endpoint_url=endpoint)
    seen = {
        "event": event,
        "function_name": context.function_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "env": {k: os.environ.get(k) for k in ("AWS_LAMBDA_FUNCTION_NAME", "CHANNEL_TABLE_NAME", "AWS_REGION")},
    }
    client.post_to_connection(ConnectionId=event["requestContext"]["connectionId"], Data=json.dumps(seen).encode())
    return {"statusCode": 200}


def noisy(event, context):
    """Print to stdout, as handlers do: Lambda sends it to the logs."""
    print("a handler's print", {"not": "an answer"})
    print(json.dumps({"id": 1, "result": "a line that looks like an answer"}))
    return {"statusCode": 200}
