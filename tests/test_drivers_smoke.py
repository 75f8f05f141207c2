"""The ``api`` fixture runs one test body through the blocking and the asyncio drivers."""
import rom


async def test_api_fixture_runs_an_async_test_body(api, conn):
    class Thing(rom.Model):
        name = rom.Text()

    assert api.is_async in (False, True)
    conn.set('drivers-smoke', '1')
    assert conn.get('drivers-smoke') == b'1'
