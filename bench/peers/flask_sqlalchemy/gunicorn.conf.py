# Gunicorn's documented starting point: sync workers, (2 x cores) + 1 of them.
import multiprocessing

bind = "0.0.0.0:5000"
workers = multiprocessing.cpu_count() * 2 + 1
