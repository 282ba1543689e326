"""Start Phoenix for the tests with its gRPC receiver disabled (run by Phoenix's own venv).

Phoenix binds its OTLP/gRPC receiver to every interface (``[::]``) whatever ``PHOENIX_HOST``
says; the tests send OTLP over HTTP on 127.0.0.1 only, so the receiver is switched off before
the server starts. Everything else is ``phoenix serve`` as shipped.
"""

import sys

import phoenix.server.grpc_server as grpc_server
from phoenix.server.main import main

_init = grpc_server.GrpcServer.__init__


def _disabled(self, *args, **kwargs):  # type: ignore[no-untyped-def]
    _init(self, *args, **kwargs)
    self._disabled = True


grpc_server.GrpcServer.__init__ = _disabled
sys.argv = ["phoenix", "serve"]
main()
