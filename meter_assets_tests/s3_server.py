"""moto's S3 server with conditional PUTs atomic, as S3's are.

moto checks `If-None-Match: *` and then stores the object in two steps, each request on its own
thread: two writers creating one Delta commit file at once can both be told they won, and the
second silently replaces the first's commit. S3 itself refuses the second (the guarantee delta-rs
relies on with `conditional_put=etag`), so the tests' server does too: one conditional PUT at a time.

Run as `python -m meter_assets_tests.s3_server -H 127.0.0.1 -p PORT` (moto.server's arguments).
"""

import sys
import threading

from moto import server
from moto.s3.responses import S3Response

_conditional = threading.Lock()
_put_object = S3Response.put_object


def _atomic_put_object(self):
    if self.headers.get("If-None-Match") or self.headers.get("If-Match"):
        with _conditional:
            return _put_object(self)
    return _put_object(self)


if __name__ == "__main__":
    S3Response.put_object = _atomic_put_object
    server.main(sys.argv[1:])
