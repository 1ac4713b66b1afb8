"""The stream state machine as a table: (state, input) -> (next state, action)."""

from __future__ import annotations

import enum


class StreamState(enum.Enum):
    __hash__ = object.__hash__  # members are singletons; Enum's own hash is slow Python code

    IDLE = "idle"
    OPEN = "open"
    HALF_CLOSED_LOCAL = "half-closed-local"  # we sent FIN
    HALF_CLOSED_REMOTE = "half-closed-remote"  # the peer sent FIN
    CLOSED = "closed"


class StreamInput(enum.Enum):
    __hash__ = object.__hash__

    SEND_OPEN = "send-open"
    RECV_OPEN = "recv-open"
    SEND_DATA = "send-data"
    RECV_DATA = "recv-data"
    SEND_FIN = "send-fin"
    RECV_FIN = "recv-fin"
    SEND_RESET = "send-reset"
    RECV_RESET = "recv-reset"


class Action(enum.Enum):
    __hash__ = object.__hash__

    OK = "ok"
    IGNORE = "ignore"  # a late frame for a stream that is already gone
    LOCAL_ERROR = "local-error"  # the application misused the API
    STREAM_ERROR = "stream-error"  # the peer broke this stream's rules: reset it
    CONNECTION_ERROR = "connection-error"  # the peer broke the session's rules


S, I, A = StreamState, StreamInput, Action  # noqa: E741

_OK_TRANSITIONS: dict[tuple[StreamState, StreamInput], StreamState] = {
    (S.IDLE, I.SEND_OPEN): S.OPEN,
    (S.IDLE, I.RECV_OPEN): S.OPEN,
    (S.OPEN, I.SEND_DATA): S.OPEN,
    (S.OPEN, I.RECV_DATA): S.OPEN,
    (S.OPEN, I.SEND_FIN): S.HALF_CLOSED_LOCAL,
    (S.OPEN, I.RECV_FIN): S.HALF_CLOSED_REMOTE,
    (S.HALF_CLOSED_LOCAL, I.RECV_DATA): S.HALF_CLOSED_LOCAL,
    (S.HALF_CLOSED_LOCAL, I.RECV_FIN): S.CLOSED,
    (S.HALF_CLOSED_REMOTE, I.SEND_DATA): S.HALF_CLOSED_REMOTE,
    (S.HALF_CLOSED_REMOTE, I.SEND_FIN): S.CLOSED,
}


def _build() -> dict[tuple[StreamState, StreamInput], tuple[StreamState, Action]]:
    table = {}
    for state in StreamState:
        for inp in StreamInput:
            key = (state, inp)
            if key in _OK_TRANSITIONS:
                table[key] = (_OK_TRANSITIONS[key], A.OK)
            elif inp in (I.SEND_RESET, I.RECV_RESET):
                # A reset closes any stream that exists; resetting a closed one is a no-op.
                if state is S.IDLE:
                    action = A.LOCAL_ERROR if inp is I.SEND_RESET else A.CONNECTION_ERROR
                    table[key] = (state, action)
                else:
                    table[key] = (S.CLOSED, A.OK if state is not S.CLOSED else A.IGNORE)
            elif inp.name.startswith("SEND"):
                table[key] = (state, A.LOCAL_ERROR)
            elif inp is I.RECV_OPEN:
                table[key] = (state, A.CONNECTION_ERROR)  # a stream id is opened once, ever
            elif state is S.CLOSED:
                table[key] = (state, A.IGNORE)  # frames in flight when we closed it
            elif state is S.IDLE:
                table[key] = (state, A.CONNECTION_ERROR)
            else:
                table[key] = (state, A.STREAM_ERROR)  # data or FIN after the peer's FIN
    return table


#: Every (state, input) pair, with its outcome.
TRANSITIONS = _build()


def transition(state: StreamState, inp: StreamInput) -> tuple[StreamState, Action]:
    return TRANSITIONS[(state, inp)]
