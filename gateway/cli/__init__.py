"""The ``gateway`` command line: ``main`` builds the parser; one module per command group
(``config`` for which settings a command runs with, ``deploy``, ``evidence``, ``failover``,
``health``, ``tenant``)."""
