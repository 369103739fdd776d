"""The warm worker: ``gdvision`` calls from shell loops without paying torch's start-up each time.

``gdvision worker start`` launches a process that keeps torch and every gdvision module imported; while it runs,
each ``gdvision ...`` call is a thin client (:mod:`gdvision.worker.client`, standard library only) that hands
its argv, directory, environment and standard streams to the worker, which forks a child to run the command
(:mod:`gdvision.worker.server`, :mod:`gdvision.worker.child`). No worker, or one that declines: the call runs
in-process as before. See docs/worker.md.

Modules: :mod:`~gdvision.worker.paths` (the private runtime folder), :mod:`~gdvision.worker.peer` (peer
credentials), :mod:`~gdvision.worker.protocol` (the wire format), :mod:`~gdvision.worker.client`,
:mod:`~gdvision.worker.server`, :mod:`~gdvision.worker.child`, :mod:`~gdvision.worker.control` (start, stop,
status). This package file imports nothing, so the client stays light.
"""
