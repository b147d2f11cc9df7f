"""The contact policy: every candidate touch passes one arbiter before it can reach a customer.

``settings`` holds the ``[policy]`` configuration; ``inputs`` reads what the arbiter needs from
the store; ``arbiter`` decides a day (pure functions over frames); ``plan`` writes the day's
plan, its decision records and the outbox; ``explain`` answers for one customer.
"""
