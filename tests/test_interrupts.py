"""Ctrl-C and SIGTERM held back while a step is handed to a worker
(gitpipe/core/interrupts.py), with real signals sent to this process."""

from __future__ import annotations

import os
import signal
import time

import pytest

from gitpipe.core import interrupts


@pytest.fixture
def installed():
    """The console script's handlers (SIGTERM too), put back after the test."""
    before = {n: signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM)}
    interrupts.install()
    yield
    for number, handler in before.items():
        signal.signal(number, handler)


def signal_self(number: int) -> None:
    os.kill(os.getpid(), number)
    time.sleep(0.05)  # the handler runs here, in the main thread, at the latest


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_inside_a_held_stretch_interrupts_only_as_the_stretch_ends(installed, number):
    done = []
    with pytest.raises(KeyboardInterrupt), interrupts.held():
        signal_self(number)
        done.append("the rest of the stretch ran")
    assert done == ["the rest of the stretch ran"]


def test_a_signal_outside_a_held_stretch_interrupts_at_once(installed):
    done = []
    with pytest.raises(KeyboardInterrupt):
        signal_self(signal.SIGTERM)
        done.append("ran on after the signal")
    assert done == []


def test_the_library_catches_ctrl_c_for_a_run_where_python_s_own_handler_is_set():
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    done = []
    with pytest.raises(KeyboardInterrupt), interrupts.catching(), interrupts.held():
        signal_self(signal.SIGINT)
        done.append("the rest of the stretch ran")
    assert done == ["the rest of the stretch ran"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_nested_stretches_hold_the_interrupt_until_the_outermost_ends():
    done = []
    with pytest.raises(KeyboardInterrupt), interrupts.catching(), interrupts.held():
        with interrupts.held():
            signal_self(signal.SIGINT)
        done.append("after the inner stretch")
    assert done == ["after the inner stretch"]


def test_an_interrupt_held_back_is_raised_once_and_then_forgotten():
    with interrupts.catching():
        with pytest.raises(KeyboardInterrupt), interrupts.held():
            signal_self(signal.SIGINT)
        with interrupts.held():
            time.sleep(0.01)  # no second interrupt comes out of this one


def test_an_error_inside_a_held_stretch_gives_way_to_the_interrupt_and_is_its_context():
    with pytest.raises(KeyboardInterrupt) as raised, interrupts.catching(), interrupts.held():
        signal_self(signal.SIGINT)
        raise ValueError("inside")
    assert isinstance(raised.value.__context__, ValueError)


def test_catching_puts_back_the_handlers_it_found_and_leaves_a_foreign_one_alone():
    heard = []

    def foreign(signum, frame):
        heard.append(signum)

    before_int = signal.getsignal(signal.SIGINT)
    before_term = signal.signal(signal.SIGTERM, foreign)
    try:
        with interrupts.catching():
            assert signal.getsignal(signal.SIGINT) is interrupts.interrupt
            assert signal.getsignal(signal.SIGTERM) is foreign
            with interrupts.held():
                signal_self(signal.SIGTERM)  # the foreign handler hears it: nothing held
        assert heard == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGINT) is before_int
        assert signal.getsignal(signal.SIGTERM) is foreign
    finally:
        signal.signal(signal.SIGTERM, before_term)


def test_in_a_stopping_scope_only_the_first_signal_is_raised_the_next_one_hurries():
    done = []
    with interrupts.stopping():
        with pytest.raises(KeyboardInterrupt):
            signal_self(signal.SIGINT)
        assert not interrupts.hurried()
        signal_self(signal.SIGINT)  # the run is stopping: not raised again
        signal_self(signal.SIGINT)
        done.append("the stop went on")
        assert interrupts.hurried()
    assert done == ["the stop went on"]
    assert not interrupts.hurried()  # forgotten as the scope ends
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    # and the next run stops on its first again
    with pytest.raises(KeyboardInterrupt), interrupts.stopping():
        signal_self(signal.SIGINT)


def test_an_interrupt_held_back_in_a_stopping_scope_counts_as_the_first(installed):
    with interrupts.stopping():
        with pytest.raises(KeyboardInterrupt), interrupts.held():
            signal_self(signal.SIGTERM)
        with interrupts.held():
            signal_self(signal.SIGINT)  # neither held nor raised: the stop hurries
        assert interrupts.hurried()
