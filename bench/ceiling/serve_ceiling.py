"""Run `ceiling:create_app` exactly the way `python -m app serve` runs the product.

The product's `app.serve.serve()` builds Granian's `Server` from the product's
configuration (workers, blocking threads, HTTP/1 settings, logging...). This
launcher swaps only the application target, so every other server setting is
the product's own, read from the same environment variables, and stays so when
the product changes them. Runs in the product image with PYTHONPATH=/bench:/app.
"""

import app.serve as product
from app.config import Config

_Server = product.Server


def _ceiling_server(target, *args, **kwargs):
    return _Server("ceiling:create_app", *args, **kwargs)


if __name__ == "__main__":  # Granian spawns its workers, which import this module again
    product.Server = _ceiling_server
    raise SystemExit(product.serve(Config.from_env()))
