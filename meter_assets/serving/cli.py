"""`meter-api`: serve the usage API and page, or mint a customer's token for the demo.

meter-api serve [--host 127.0.0.1] [--port 8000] [--workers N]
meter-api token CUSTOMER_ID [--ttl SECONDS] [--base-url http://127.0.0.1:8000]
"""

from __future__ import annotations

import argparse
import sys

from meter_assets.serving.auth import mint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="meter-api", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the API and page under uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers", type=int, default=None, help="server processes, each with its own pool (default METER_API_WORKERS)"
    )
    token = commands.add_parser("token", help="print a signed token for one customer, and the page URL")
    token.add_argument("customer_id", type=int)
    token.add_argument("--ttl", type=int, default=None, help="seconds (default METER_API_TOKEN_TTL_SECONDS)")
    token.add_argument("--base-url", default="http://127.0.0.1:8000")
    args = parser.parse_args(argv)

    if args.command == "serve":
        import uvicorn

        from meter_assets.config import settings
        from meter_assets.serving.server import limits

        uvicorn.run(
            "meter_assets.serving.api:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers or settings().api_workers,
            log_level="warning",
            access_log=False,
            **limits(),
        )
        return 0
    value = mint(args.customer_id, args.ttl)
    print(value)
    print(f"{args.base_url.rstrip('/')}/#token={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
