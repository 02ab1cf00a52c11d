"""Test helpers: recorded-shape API Gateway events and a fake management API."""
