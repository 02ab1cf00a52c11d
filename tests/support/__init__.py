"""Test helpers, importable as ``support.*`` (pytest's ``pythonpath``): events, the driver of
the Lambda entry points, fakes of AWS, and local mode's world.

Among them: recorded-shape API Gateway events and the route set (``events``), the one
driver of the Lambda entry points (``lambda_world``), the table (``table``),
a fake management API (``management``), a recording HTTP server that stands in
for AWS or a publish endpoint (``recorder``), DynamoDB faults (``faulty_dynamodb``),
fake AWS credentials (``aws``) and local mode's world, read once per test
process (``local_mode``)."""
