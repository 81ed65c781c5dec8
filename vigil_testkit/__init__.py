"""vigil_testkit: real services for the test suite and the benchmarks, in one place both import.

- :mod:`vigil_testkit.net`            free ports on localhost
- :mod:`vigil_testkit.procs`          child processes that die with the run (process groups, parent-death signal)
- :mod:`vigil_testkit.mosquitto`      a Mosquitto process with a configuration broker_config rendered
- :mod:`vigil_testkit.broker`         the project's secure broker (TLS, dynamic security accounts)
- :mod:`vigil_testkit.smtp`           an SMTP server (aiosmtpd) that keeps what it receives
- :mod:`vigil_testkit.agent_harness`  a real enrollment and a stand-in server that opens envelopes
                                      and signs receipts, for the agent end to end

``tests`` and ``bench`` import it; it imports neither (import-linter), and no package that ships
imports it: it is not part of the distribution.
"""
