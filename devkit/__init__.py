"""Development tooling, kept apart from the product (``sync/``) and never deployed.

* ``devkit.sandbox``: local Graph and Workbooks servers that follow the public protocols;
* ``devkit.host``: a local stand-in for the Azure Functions host (HTTP, timers, queues);
* ``devkit.azurite``: starts the official storage emulator for tests, the demo and benchmarks;
* ``devkit.checks``: checks that keep the README and ``infra/`` in step with the code;
* ``devkit.demo``: the README's demo.

Entry point: ``python -m devkit {demo|serve|sandbox|azurite|readme|infra-check}``.
"""
