"""Webhooks: a signed POST to a task's ``callback_url`` when it reaches a terminal state.

``signing`` (Standard Webhooks signatures, pure), ``events`` (the body, webhook ids, how a
response is judged; pure), ``urls`` (the SSRF guard's DNS half), ``notify`` (enqueue on the
internal ``{ns}.webhooks`` queue) and ``delivery`` (the consumer every worker runs). See
docs/webhooks.md.
"""
