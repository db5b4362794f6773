"""A backend that answers every HTTP/1.1 request after a fixed delay (the slow mirror).

usage: python3 slow_backend.py PORT [DELAY_SECONDS]   (default 0.2)
asyncio, so concurrent requests wait in parallel and keep-alive connections are reused,
as nginx's upstream keepalive expects; only the delay is slow.
"""
import asyncio
import sys

BODY = b'{"mirror":"slow"}'
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
DELAY = float(sys.argv[2]) if len(sys.argv) > 2 else 0.2


async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    await reader.readexactly(int(line.split(b":", 1)[1]))
            await asyncio.sleep(DELAY)
            writer.write(RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    async with server:
        await server.serve_forever()


asyncio.run(main())
