"""Local stand-ins for vendor APIs, speaking each vendor's wire format on 127.0.0.1 free ports.

They replace the vendor, never our code: the adapters under test talk to them through the real SDKs over
real sockets. Each fake is an async context manager started inside the test's event loop, scripted with
what to answer next, and able to fail the way the vendor fails (HTTP errors with the vendor's error
body, error messages, connections that hang).
"""

from .common import Fault

__all__ = ["Fault"]
