"""Ask one API task, from inside it, whether a key still works: `GET /items?limit=1` on
127.0.0.1:5000 with the key, again and again, each on a new connection (so that every worker of
the task takes its share), until stdin ends.

Run by tests/swarm/test_swarm.py with `docker exec -i <task container> python -c <this file>`:
the stack's overlay networks take no other container, and the key comes on stdin's first line,
never as an argument or an environment variable. Standard library only (the API image's Python).
One JSON line per answer on stdout: {"at": epoch seconds, "status": the status, or null}.
"""

import http.client
import json
import select
import sys
import time

key = sys.stdin.readline().strip()
while not select.select([sys.stdin], [], [], 0)[0]:  # readable: the test closed it
    at, status = time.time(), None
    connection = http.client.HTTPConnection("127.0.0.1", 5000, timeout=5)
    try:
        connection.request("GET", "/items?limit=1", headers={"Authorization": f"Bearer {key}"})
        response = connection.getresponse()
        response.read()
        status = response.status
    except OSError:
        pass
    finally:
        connection.close()
    print(json.dumps({"at": at, "status": status}), flush=True)
    time.sleep(0.05)
