"""Loopback servers that implement each provider's documented HTTP contract.

They answer as the real provider does (success, throttling, auth failure, timeout, a malformed
reply, a partially failed batch) so the adapters, the dispatcher's crash recovery and the
benchmarks run against a real socket without an account. ``mode`` switches the behaviour; every
accepted message is recorded in ``accepted`` so a test can check what arrived, and how often.
"""
