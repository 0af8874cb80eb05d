"""Schemathesis hooks of the fuzz run (tests/tests/hostile_input.rs loads this file through
SCHEMATHESIS_HOOKS; settings are in schemathesis.toml).

A call sent again with an Idempotency-Key it was sent with before gets the first answer again
(docs/API.md, "Idempotent retries"): a save's replayed 202 names the state the first request
made, which a later step may have deleted. The generator reuses key values across stateful
sequences, so a sequence could read a state through such a replay, get the API's truthful 404
and report "created resource not found" (ST302), or not, by the order of a time-bounded run.
In the stateful phase every valid request therefore gets a key of its own; the fuzzing phase
keeps the generated keys, replays and conflicts included.
"""

import uuid

import schemathesis
from schemathesis import GenerationMode
from schemathesis.generation.meta import TestPhase

HEADER = "Idempotency-Key"


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    meta = case.meta
    if meta is None or meta.phase.name != TestPhase.STATEFUL:
        return
    # A negative case may be negative in this very header: left as generated.
    if meta.generation.mode != GenerationMode.POSITIVE:
        return
    if case.headers and HEADER in case.headers:
        case.headers[HEADER] = str(uuid.uuid4())
