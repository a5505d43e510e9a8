"""Helpers for the end-to-end tests, by concern: procs (tunneld and other
processes, waits), servers (target servers and squid), clients (raw
connections, answers, the error-answer check), auth (credentials and
hash lines). tests/dnsserver.py is the test resolver. conftest.py holds
the fixtures and re-exports these names for `from conftest import ...`."""
