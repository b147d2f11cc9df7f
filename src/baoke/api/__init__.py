"""The HTTP API: events from other systems (call centre, WeCom callbacks, the DMS) in real time."""
