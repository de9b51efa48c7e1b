"""webhook-worker's Python tools, one package beside the launchers in scripts/:

    chaos/     scripts/chaos (make chaos, make test): fault injection and the checks that decide
               PASS or FAIL
    bench/     scripts/bench (make bench, make soak): the benchmark's phases, figures and table
    core.py, postgres.py, processes.py, loopback.py, sampler.py: what both share (settings from
               the environment, psql and the databases, worker processes and their logs, a loopback
               HTTP server, the sampler of deliveries in flight per endpoint)

Python's standard library only, run by the system python3: the launchers put scripts/ on
sys.path and call each tool's main(). The unit tests are in scripts/tests (pytest), the linter is
ruff (pyproject.toml); `scripts/python-tools lint|test` runs them in a virtual environment.
"""
