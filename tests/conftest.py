pytest_plugins = ["tests.db_fixtures", "tests.live_fixtures", "tests.node_fixtures",
                  "tests.s3_fixtures"]

# Issue 3: tests that are not about identity run without the face verification gate; the
# identity tests turn it on for their own node (tests/identity_fixtures.py).
import os  # noqa: E402

os.environ.setdefault("TC_IDENTITY_REQUIRED", "0")
# Issue 4: likewise guardian presence detection (the demo patient is a child); the presence tests
# turn it on for their own node (tests/presence_fixtures.py).
os.environ.setdefault("TC_GUARDIAN_PRESENCE", "0")


def pytest_asyncio_loop_factories(config: object, item: object) -> dict:
    """Every async test runs on the event loop the node runs on (server/event_loop.py:
    TC_EVENT_LOOP, uvloop unless set), so the suite tests what is deployed."""
    from core.config import event_loop_setting
    from server.event_loop import new_event_loop

    name = event_loop_setting()
    return {name: lambda: new_event_loop(name)}
