"""One call the way django-concurrent-test-helper made it: a fresh Python
process that sets Django up, connects, runs one function and prints the
pickled result. Used by calls.py as the baseline; never by the library.

    python ancestor_call.py package.module:function BASE64_PICKLED_KWARGS
"""

import base64
import importlib
import os
import pickle
import sys
import time


def main() -> None:
    path, raw_kwargs = sys.argv[1], sys.argv[2]
    import django

    django.setup()
    from django.db import connection

    # The database the caller's test uses (the ancestor read it from settings).
    connection.settings_dict["NAME"] = os.environ["BENCH_TEST_DB"]
    connection.ensure_connection()
    module, _, name = path.partition(":")
    func = getattr(importlib.import_module(module), name)
    kwargs = pickle.loads(base64.b64decode(raw_kwargs))
    start = time.time()
    value = func(**kwargs)
    end = time.time()
    sys.stdout.write(base64.b64encode(pickle.dumps((value, start, end))).decode())


if __name__ == "__main__":
    main()
