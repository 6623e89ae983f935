# gunicorn's settings for Amends (read from the working directory by every `gunicorn` run:
# the Procfile, the benchmarks and the reliability suite). WEB_CONCURRENCY (processes) is
# read by gunicorn itself.
#
# Threads, not one request per process: the webhook receiver spends most of a request waiting
# on PostgreSQL's commit, and concurrent requests of one process share one commit
# (webhooks/recorder.py). gthread also keeps connections alive between Shopify's requests.
worker_class = "gthread"
threads = 8
