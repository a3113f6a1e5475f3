"""`llmtwin up`: the whole twin on one machine, on the same code paths as the cluster.

- `twin.py`: the composition root (inbox, queue, gateway, local runner, status file);
- `inbox.py`: what changed between the inbox folder (or an endpoint's bucket) and the collection;
- `watch.py`: inbox changes as they happen (watchdog);
- `state.py`: which process serves a data directory, and on which port.
"""
