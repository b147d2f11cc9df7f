"""Channels: the adapter protocol, the provider registry, the outbox and its dispatcher.

A touch the contact policy scheduled sits in the ``outbox``. The dispatcher
(:mod:`baoke.channels.dispatcher`) claims what is due, renders it, sends it through the provider
the channel's route names (with rate limits, retries, a circuit breaker and failover), records
the outcome on the touch, and recovers a crashed claim by asking the provider what it received.
Provider callbacks (receipts, replies, WeCom events) come back through :mod:`.inbound`;
:mod:`.emergency` pauses a batch that misbehaves.
"""
