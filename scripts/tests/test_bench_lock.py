"""BENCH_LOCK: the bench holds the named lock while it measures, and only then."""

import fcntl
import signal

import pytest

from webhook_tools.bench.context import Bench


def held_by_someone(path):
    with open(path, "a") as probe:
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(probe, fcntl.LOCK_UN)
        return False


def bench_without_database():
    return object.__new__(Bench)  # quiet() reads only the environment


def test_quiet_holds_the_lock_inside_and_releases_it_after(tmp_path, monkeypatch):
    lock = tmp_path / "cpu.lock"
    monkeypatch.setenv("BENCH_LOCK", str(lock))
    bench = bench_without_database()
    assert not held_by_someone(lock)
    with bench.quiet():
        assert held_by_someone(lock)
    assert not held_by_someone(lock)


def test_quiet_releases_the_lock_when_the_measurement_fails(tmp_path, monkeypatch):
    lock = tmp_path / "cpu.lock"
    monkeypatch.setenv("BENCH_LOCK", str(lock))
    with pytest.raises(RuntimeError):
        with bench_without_database().quiet():
            raise RuntimeError("phase failed")
    assert not held_by_someone(lock)


def test_a_phase_inside_a_phase_does_not_wait_for_its_own_lock(tmp_path, monkeypatch):
    # The pgbouncer phase runs its burn-down and delivery as phases of their own.
    lock = tmp_path / "cpu.lock"
    monkeypatch.setenv("BENCH_LOCK", str(lock))
    bench = bench_without_database()

    def hung(signum, frame):
        raise TimeoutError("the inner phase waited for the outer one's lock")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    try:
        with bench.quiet():
            with bench.quiet():
                assert held_by_someone(lock)
            assert held_by_someone(lock), "the inner phase let go of the outer one's lock"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert not held_by_someone(lock)


def test_without_bench_lock_nothing_is_locked(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_LOCK", raising=False)
    with bench_without_database().quiet():
        assert list(tmp_path.iterdir()) == []
