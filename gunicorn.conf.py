# gunicorn's settings for Amends (read from the working directory by every `gunicorn` run:
# the Procfile, the benchmarks and the reliability suite). WEB_CONCURRENCY (processes) is
# read by gunicorn itself.
#
# Threads, not one request per process: the webhook receiver spends most of a request waiting
# on PostgreSQL's commit, and concurrent requests of one process share one commit
# (webhooks/recorder.py). gthread also keeps connections alive between Shopify's requests.
worker_class = "gthread"
threads = 8
# Kept-alive connections stay with the process that accepted them; with SO_REUSEPORT the
# kernel spreads new connections over the processes instead of the first one awake taking
# most (in B1, 8 connections could leave one process with six and its latency in seconds).
reuse_port = True


def post_worker_init(worker: object) -> None:
    import gc
    import sys

    # A request thread waiting for the GIL waits up to the switch interval (5 ms by default)
    # while another thread computes: a 1 ms interval halves B1's median acknowledgement.
    sys.setswitchinterval(0.001)
    # The loaded app is ~130,000 objects that live as long as the process. Left to the cyclic
    # collector, every full collection walked them all: 70–95 ms with the GIL held, every few
    # seconds under load, which was the no-work p99 at half the maximum rate. Frozen, they
    # are never scanned (the collections left take under 3 ms).
    gc.freeze()
