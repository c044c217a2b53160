"""Suite-wide setup: SIGINT is not ignored in the processes the tests start.

A shell without job control starts a background job (``cmd &``, ``nohup … &``) with SIGINT ignored, every child
inherits that, and a Python started with SIGINT ignored installs no ``KeyboardInterrupt`` handler: the tests that press
Ctrl-C (SIGINT to a command's process group) would then test nothing the user sees. A handler installed here is reset
to the default in every process the tests start (an ignored signal would stay ignored).
"""

import signal

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
