"""Development and test tooling, kept out of the server package: the local backing services as
child processes (``services``), the one-command local stack (``python -m devstack``) and its
warm-up progress bar. The server never imports this package."""
