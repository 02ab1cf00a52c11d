"""Handlers for local-mode tests of API Gateway behaviour our own handlers never
trigger: a rejected handshake, a crashing integration, one that holds until
the test releases it, one that prints."""

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


def _post(event, frame):
    """Post ``frame`` to the connection that sent the event."""
    import os

    import boto3

    client = boto3.client("apigatewaymanagementapi", endpoint_url=os.environ["CHANNEL_MANAGEMENT_ENDPOINT"])
    client.post_to_connection(ConnectionId=event["requestContext"]["connectionId"], Data=json.dumps(frame).encode())


def held(event, context):
    """Create RECORD_DIR/started-<key>, wait until the test creates
    RECORD_DIR/release-<key> (at most until the function's time runs out),
    then post ``released``."""
    import os

    key = json.loads(event["body"])["key"]
    open(os.path.join(os.environ["RECORD_DIR"], f"started-{key}"), "w").close()
    release = os.path.join(os.environ["RECORD_DIR"], f"release-{key}")
    while not os.path.exists(release) and context.get_remaining_time_in_millis() > 500:
        time.sleep(0.01)
    _post(event, {"type": "released"})
    return {"statusCode": 200}


def remember(event, context):
    """Echo what the runtime handed over: the event and part of the context."""
    import os

    _post(event, {
        "event": event,
        "function_name": context.function_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "env": {k: os.environ.get(k) for k in ("AWS_LAMBDA_FUNCTION_NAME", "CHANNEL_TABLE_NAME", "AWS_REGION")},
    })
    return {"statusCode": 200}


def noisy(event, context):
    """Print to stdout, as handlers do (Lambda sends it to the logs), then
    post the frame's number."""
    print("a handler's print", {"not": "an answer"})
    print(json.dumps({"id": 1, "result": "a line that looks like an answer"}))
    _post(event, {"noisy": json.loads(event["body"])["number"]})
    return {"statusCode": 200}
